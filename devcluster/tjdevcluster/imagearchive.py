"""Images made from a few files, without any builder or registry: docker-archive tarballs
that ``ctr images import`` and ``docker load`` take (the real node's pause image, the kind
node's control-plane images). Development and test scaffolding."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path


def _tar_info(name: str, size: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, mode, kind, 0
    info.uid = info.gid = 0
    return info


def files_image(
    ref: str,
    files: dict[str, Path],
    config: dict[str, object],
    symlinks: dict[str, str] | None = None,
) -> bytes:
    """A docker-archive tarball of a one-layer image: ``files`` (path in the image → file
    here), ``symlinks`` (path → target) and the image ``config`` (Entrypoint, Env, ...)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        entries = sorted({*files, *(symlinks or {})})
        for name in entries:
            parts = name.strip("/").split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                if folder not in dirs:
                    dirs.add(folder)
                    tar.addfile(_tar_info(folder, 0, 0o755, tarfile.DIRTYPE))
            arcname = name.strip("/")
            if name in files:
                data = files[name].read_bytes()
                mode = 0o755 if os.access(files[name], os.X_OK) else 0o644
                tar.addfile(_tar_info(arcname, len(data), mode), io.BytesIO(data))
            else:
                info = _tar_info(arcname, 0, 0o777, tarfile.SYMTYPE)
                info.linkname = (symlinks or {})[name]
                tar.addfile(info)
        tar.addfile(_tar_info("tmp", 0, 0o1777, tarfile.DIRTYPE))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "tjdevcluster.imagearchive.files_image"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": ["layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (
            ("layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            tar.addfile(_tar_info(name, len(data), 0o644), io.BytesIO(data))
    return out.getvalue()

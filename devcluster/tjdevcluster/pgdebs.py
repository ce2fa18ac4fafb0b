"""The .deb files of the PostgreSQL image (images/postgres/Dockerfile), fetched on this
machine with its own apt from the Debian mirror it uses, so that the image builds with no
network.

Development and test scaffolding. apt resolves ``postgresql-15`` against the base image's
dpkg status (read from the debootstrap tarball, baseimage.py), not this machine's: the
folder holds exactly what the base lacks, and the Dockerfile installs it with
``dpkg --install``. Cached in ``<cache>/images/pgdebs-<hash>/`` where the
hash covers the base recipe and every resolved package and version (a new Debian point
release is a new folder).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from . import baseimage
from .imagecache import (
    ImagesError,
    Log,
    cache_root,
    check_free_space,
    is_complete,
    locked,
    mark_complete,
    recipe_hash,
    remove_stale,
    run_step,
    scratch_dir,
)

PACKAGES = ("postgresql-15",)
INSTALL_HINT = "apt-get update (the host's package lists resolve the PostgreSQL packages)"


def _base_status(base_tarball: Path, dest: Path) -> Path:
    """The base image's ``var/lib/dpkg/status``, copied out of its tarball into ``dest``."""
    with tarfile.open(base_tarball) as tar:
        member = tar.extractfile("./var/lib/dpkg/status")
        if member is None:
            raise ImagesError(f"{base_tarball} has no var/lib/dpkg/status")
        status = dest / "status"
        status.write_bytes(member.read())
    return status


def _apt(status: Path, archives: Path, *args: str) -> list[str]:
    """apt-get with the base image's dpkg status and our own archive folder; never the
    host's dpkg lock or cache."""
    return [
        "apt-get",
        "-q",
        "-y",
        "--no-install-recommends",
        "-o",
        f"Dir::State::status={status}",
        "-o",
        f"Dir::Cache::archives={archives}",
        "-o",
        "Debug::NoLocking=1",
        *args,
    ]


def resolve(status: Path) -> list[str]:
    """``package=version`` of everything apt would install on the base (a dry run)."""
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        (Path(tmp) / "partial").mkdir()
        out = subprocess.run(
            _apt(status, Path(tmp), "install", "--simulate", *PACKAGES),
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        raise ImagesError(
            f"apt cannot resolve {', '.join(PACKAGES)}: "
            f"{out.stderr.strip().splitlines()[-1:] or out.stdout[-300:]}; {INSTALL_HINT}"
        )
    found = re.findall(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", out.stdout, re.M)
    if not any(name == PACKAGES[0] for name, _ in found):
        raise ImagesError(f"apt would not install {PACKAGES[0]}: {out.stdout[-300:]}")
    return sorted(f"{name}={version}" for name, version in found)


def ensure_debs(log: Log) -> Path:
    """The folder of .deb files the PostgreSQL image installs, downloaded if missing."""
    if not shutil.which("apt-get"):
        raise ImagesError("apt-get not found: the PostgreSQL image is built from Debian packages")
    base = baseimage.ensure_base(log)
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        status = _base_status(base, Path(tmp))
        pins = resolve(status)
        recipe = "\n".join([f"base {recipe_hash(baseimage.recipe())}", *pins])
        folder = cache_root() / f"pgdebs-{recipe_hash(recipe)}"
        if is_complete(folder, recipe):
            return folder
        with locked(folder.name):
            if is_complete(folder, recipe):
                return folder
            check_free_space(cache_root(), 200 * 1024**2)
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "partial").mkdir(parents=True)
            log(f"apt-get download of {len(pins)} packages for the PostgreSQL image")
            run_step(
                _apt(status, folder, "install", "--download-only", *pins),
                "apt-get download",
                cache_root() / "logs" / "pgdebs.log",
                log,
            )
            (folder / "partial").rmdir()
            debs = sorted(folder.glob("*.deb"))
            if len(debs) != len(pins):
                raise ImagesError(
                    f"apt-get downloaded {len(debs)} .deb files for {len(pins)} packages; "
                    f"see {cache_root() / 'logs' / 'pgdebs.log'}"
                )
            mark_complete(folder, recipe)
            remove_stale(folder)
            size = sum(deb.stat().st_size for deb in debs) / 1e6
            log(f"{len(debs)} PostgreSQL packages in {folder} ({size:.0f} MB)")
    return folder

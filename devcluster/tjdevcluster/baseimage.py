"""The base image of both Dockerfiles, made without any registry: a Debian bookworm
``debootstrap --variant=minbase`` root filesystem with Python 3.11, cleaned of everything
of this machine, as a tarball that ``docker import`` tags ``python:3.11-slim``.

Development and test scaffolding. The tarball is cached in
``<cache>/images/base-bookworm-<hash of recipe>/rootfs.tar``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

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

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv", "python-is-python3")
PUBLIC_MIRROR = "http://deb.debian.org/debian"
BASE_TAG = "python:3.11-slim"  # the name the Dockerfiles use (FROM python:3.11-slim)
# What debian:bookworm-slim leaves out (debuerreotype's "slimify"); also kept out of
# later `apt-get install`s by a dpkg.cfg.d file.
DPKG_EXCLUDES = (
    "path-exclude /usr/share/doc/*",
    "path-include /usr/share/doc/*/copyright",
    "path-exclude /usr/share/groff/*",
    "path-exclude /usr/share/info/*",
    "path-exclude /usr/share/linda/*",
    "path-exclude /usr/share/lintian/overrides/*",
    "path-exclude /usr/share/locale/*",
    "path-exclude /usr/share/man/*",
)
# The image configuration `docker import` gives it (what python:3.11-slim sets).
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
# Bump when the cleaning below changes: the hash of the recipe names the cache folder.
CLEAN_REVISION = 2


def recipe() -> str:
    """The text whose hash keys the cache (the mirror is not part of it: same content)."""
    return "\n".join(
        [
            f"debootstrap --variant={VARIANT} --include={','.join(INCLUDE)} {SUITE}",
            f"clean revision {CLEAN_REVISION}",
            *DPKG_EXCLUDES,
            *IMPORT_CHANGES,
        ]
    )


def cache_dir() -> Path:
    return cache_root() / f"base-{SUITE}-{recipe_hash(recipe())}"


def tarball() -> Path:
    return cache_dir() / "rootfs.tar"


def find_base() -> Path | None:
    """The cached tarball if complete, else None. Never builds."""
    return tarball() if is_complete(cache_dir(), recipe()) and tarball().is_file() else None


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt uses on this machine (not security or updates), else
    deb.debian.org."""
    found: list[str] = []
    legacy = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for file in legacy:
        if file.is_file():
            for line in file.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                words = [w for w in words if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    found.append(words[1])
    for file in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", file.read_text()):
            fields = dict(
                (key.strip().lower(), value.strip())
                for key, _, value in (
                    line.partition(":")
                    for line in stanza.splitlines()
                    if line and not line.startswith("#") and ":" in line
                )
            )
            if SUITE in fields.get("suites", "").split() and fields.get("enabled") != "no":
                found.extend(fields.get("uris", "").split())
    for uri in found:
        if uri.startswith(("http://", "https://")) and "security" not in uri:
            return uri.rstrip("/")
    return PUBLIC_MIRROR


def _mounts_under(folder: Path) -> list[Path]:
    prefix = str(folder.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(Path(point))
    return sorted(mounts, key=lambda p: len(p.parts), reverse=True)


def remove_rootfs(folder: Path) -> None:
    """Unmount whatever an interrupted debootstrap left mounted inside, then delete."""
    for mount in _mounts_under(folder):
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    if _mounts_under(folder):
        raise ImagesError(f"cannot unmount {', '.join(map(str, _mounts_under(folder)))}")
    shutil.rmtree(folder, ignore_errors=True)


def _remove(root: Path, pattern: str) -> None:
    for path in root.glob(pattern):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _slim(root: Path) -> None:
    """Apply DPKG_EXCLUDES to what is installed already (copyright files stay)."""
    for rule in DPKG_EXCLUDES:
        kind, pattern = rule.split(" ", 1)
        if kind == "path-exclude" and pattern != "/usr/share/doc/*":
            _remove(root, pattern.lstrip("/"))
    for doc in (root / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for path in doc.iterdir():
                if path.name == "copyright":
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        elif doc.name != "copyright":
            doc.unlink()


def clean_rootfs(root: Path) -> None:
    """Remove what belongs to this machine or to the bootstrap, slim the docs away."""
    root.chmod(0o755)  # a mkdtemp folder is 0700: "/" of the image must be traversable
    for name in ("etc/resolv.conf", "etc/hostname", "etc/machine-id", "etc/pip.conf"):
        (root / name).unlink(missing_ok=True)
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    (root / "etc/apt/sources.list").write_text(f"deb {PUBLIC_MIRROR} {SUITE} main\n")
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "var/log/*",
        "tmp/*",
        "root/.*",
        "debootstrap",
    ):
        _remove(root, pattern)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    _slim(root)
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(
        "# as in debian:bookworm-slim: no documentation, manuals or translations\n"
        + "\n".join(DPKG_EXCLUDES)
        + "\n"
    )
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(
        "# as in the debian images: no package cache left behind by apt-get\n"
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
    )
    for needed in ("usr/bin/python3", "usr/bin/python", "usr/sbin/useradd", "usr/sbin/groupadd"):
        if not (root / needed).exists():
            raise ImagesError(f"the debootstrap root file system has no /{needed}")


def ensure_base(log: Log) -> Path:
    """The cached base rootfs tarball, debootstrapped first if missing (a few minutes)."""
    found = find_base()
    if found:
        return found
    if not shutil.which("debootstrap"):
        raise ImagesError(
            "debootstrap not found; install it with `apt-get install docker.io containerd "
            "debootstrap` (or scripts/install-node-deps.sh)"
        )
    folder = cache_dir()
    with locked(folder.name):
        if find_base():
            return tarball()
        check_free_space(cache_root())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        mirror = debian_mirror()
        root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=scratch_dir()))
        start = time.monotonic()
        log(
            f"debootstrap {SUITE} ({VARIANT} + {', '.join(INCLUDE)}) from {mirror} "
            "(first time only: a few minutes)"
        )
        try:
            run_step(
                [
                    "debootstrap",
                    f"--variant={VARIANT}",
                    f"--include={','.join(INCLUDE)}",
                    SUITE,
                    str(root),
                    mirror,
                ],
                "debootstrap",
                folder / "debootstrap.log",
                log,
                env=dict(os.environ, LANG="C.UTF-8"),
                show=lambda line: line if line.startswith("I: Base system installed") else None,
            )
            if _mounts_under(root):
                raise ImagesError(f"debootstrap left file systems mounted under {root}")
            clean_rootfs(root)
            partial = folder / "rootfs.tar.partial"
            run_step(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
                "tar of the root file system",
                folder / "tar.log",
                log,
            )
            partial.rename(tarball())
        finally:
            remove_rootfs(root)
        mark_complete(folder, recipe())
        remove_stale(folder)
        size = tarball().stat().st_size / 1e6
        log(f"base root file system ready in {time.monotonic() - start:.0f} s ({size:.0f} MB)")
    return tarball()

"""The wheels both images install from, downloaded on this machine from PyPI for
CPython 3.11 on manylinux x86_64 and pinned by images/constraints.txt.

Development and test scaffolding. Cached in ``<cache>/images/wheels-<hash>/`` where the
hash covers the constraints, the requirements (from pyproject.toml) and the target
platform. Nothing of this machine's pip configuration travels with the wheels: the
Dockerfiles install from them with ``pip --no-index``.

The ELF libraries inside the wheels are stripped of their symbol tables
(``strip --strip-unneeded``, as Debian does to its packages; dynamic symbols stay) and
each wheel's RECORD is rewritten. A library that stripping would break (one that
auditwheel's patchelf rewrote: strip misaligns its load segments) keeps its bytes.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
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

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "images" / "constraints.txt"
REQUIREMENTS_SCRIPT = REPO / "images" / "requirements.py"
# (extras, replacements) of each image, as their Dockerfiles pass them to requirements.py.
IMAGE_EXTRAS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "trainer": (("trainer",), {"xgboost": "xgboost-cpu"}),
    "operator": (("operator", "ui"), {}),
}
# Pinned in constraints.txt: the build backend of the project, and the pip that installs
# with hashes from a constraints file (the base image's pip 23.0 does not).
BUILD_BACKEND = ("pip", "setuptools", "wheel")
# In the wheel folder: the wheels' pins with the SHA-256 of their (stripped) files, which
# the offline image builds install against with --require-hashes.
LOCAL_CONSTRAINTS = "constraints.txt"
PYTHON = ("3.11", "cp311")
# bookworm has glibc 2.36: every manylinux tag up to 2.36 runs there.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
# Host pip settings that must not shape what is downloaded (PIP_CERT, an index URL and
# proxies may stay: they only say how to reach PyPI from here).
DROPPED_ENV = (
    "PIP_FIND_LINKS",
    "PIP_CONSTRAINT",
    "PIP_REQUIREMENT",
    "PIP_NO_INDEX",
    "PIP_ONLY_BINARY",
    "PIP_NO_BINARY",
    "PIP_PREFER_BINARY",
    "PIP_PLATFORM",
    "PIP_PYTHON_VERSION",
    "PIP_TARGET",
    "PIP_USER",
)


def requirements_of(image: str) -> list[str]:
    """What requirements.py prints for ``image`` (as the Dockerfile runs it)."""
    extras, swaps = IMAGE_EXTRAS[image]
    argv = [sys.executable, str(REQUIREMENTS_SCRIPT), *extras]
    argv += [f"--replace={old}={new}" for old, new in swaps.items()]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ImagesError(f"images/requirements.py failed: {out.stderr.strip()}")
    return out.stdout.split()


def all_requirements() -> list[str]:
    found: list[str] = list(BUILD_BACKEND)
    for image in IMAGE_EXTRAS:
        found += [req for req in requirements_of(image) if req not in found]
    return found


def _strip_program() -> str | None:
    return shutil.which("strip")


def recipe() -> str:
    stripping = "strip --strip-unneeded (aligned loads only)" if _strip_program() else "no strip"
    return "\n".join(
        [
            f"pip download --only-binary=:all: python {PYTHON[0]} abi {PYTHON[1]}",
            stripping,
            f"{LOCAL_CONSTRAINTS} of the stripped wheels' hashes",
            "platforms " + " ".join(PLATFORMS),
            *all_requirements(),
            "constraints:",
            CONSTRAINTS.read_text(),
        ]
    )


def cache_dir() -> Path:
    return cache_root() / f"wheels-{recipe_hash(recipe())}"


def find_wheels() -> Path | None:
    """The cached wheel folder if complete, else None. Never downloads."""
    folder = cache_dir()
    return folder if is_complete(folder, recipe()) else None


def elf_loads_aligned(data: bytes) -> bool:
    """True if every PT_LOAD segment of a 64-bit little-endian ELF has offset and address
    congruent modulo its alignment (what the dynamic loader insists on)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for index in range(phnum):
        p_type, _, p_offset, p_vaddr, _, _, _, p_align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + index * phentsize
        )
        if p_type == 1 and p_align > 1 and p_offset % p_align != p_vaddr % p_align:
            return False
    return True


def _is_library(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".so") or ".so." in base


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def strip_wheel(wheel: Path, strip: str, scratch: Path) -> int:
    """Strip the ELF libraries of ``wheel`` in place; return the bytes saved."""
    with zipfile.ZipFile(wheel) as archive:
        infos = archive.infolist()
        if not any(_is_library(info.filename) for info in infos):
            return 0
        contents = {info.filename: archive.read(info) for info in infos}
    saved, changed = 0, {}
    src, out = scratch / "lib.so", scratch / "lib.stripped.so"
    for name, data in contents.items():
        if not _is_library(name) or data[:4] != b"\x7fELF" or not elf_loads_aligned(data):
            continue
        src.write_bytes(data)
        result = subprocess.run(
            [strip, "--strip-unneeded", "-o", str(out), str(src)], capture_output=True
        )
        if result.returncode != 0:
            continue
        new = out.read_bytes()
        if len(new) < len(data) and elf_loads_aligned(new):
            changed[name] = new
            saved += len(data) - len(new)
    if not changed:
        return 0
    contents.update(changed)
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(contents[record].decode())))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for row in rows:
        if row and row[0] in changed:
            row = [row[0], _record_hash(changed[row[0]]), str(len(changed[row[0]]))]
        writer.writerow(row)
    contents[record] = text.getvalue().encode()
    partial = wheel.with_name(wheel.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info in infos:
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.external_attr = info.external_attr
            copy.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(copy, contents[info.filename])
    partial.replace(wheel)
    return saved


def _strip_all(folder: Path, log: Log) -> None:
    strip = _strip_program()
    if strip is None:
        log("  strip (binutils) not found: the wheels' libraries keep their symbol tables")
        return
    start, saved = time.monotonic(), 0
    with tempfile.TemporaryDirectory(prefix="strip-", dir=scratch_dir()) as tmp:
        for wheel in sorted(folder.glob("*.whl")):
            saved += strip_wheel(wheel, strip, Path(tmp))
    seconds = time.monotonic() - start
    log(f"  strip: {saved / 1e6:.0f} MB of symbol tables removed in {seconds:.0f} s")


def write_local_constraints(folder: Path) -> Path:
    """Pin every wheel of ``folder`` with the SHA-256 of its file as it is now.

    ``pip download`` checked each file against the hash that images/constraints.txt has
    from PyPI; stripping changed the bytes, so the offline builds check these instead
    (a wheel altered in the cache after that fails the build)."""
    pins: dict[str, list[str]] = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        pins.setdefault(f"{name.replace('_', '-').lower()}=={version}", []).append(digest)
    target = folder / LOCAL_CONSTRAINTS
    target.write_text(
        "".join(
            pin + "".join(f" --hash=sha256:{digest}" for digest in digests) + "\n"
            for pin, digests in sorted(pins.items())
        )
    )
    return target


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def ensure_wheels(log: Log) -> Path:
    """The cached wheel folder, downloaded first from PyPI if missing (about a minute)."""
    found = find_wheels()
    if found:
        return found
    folder = cache_dir()
    with locked(folder.name):
        if find_wheels():
            return folder
        check_free_space(cache_root())
        shutil.rmtree(folder, ignore_errors=True)
        reqs = all_requirements()
        start = time.monotonic()
        log(f"downloading the wheels of {len(reqs)} requirements and their dependencies (PyPI)")
        with tempfile.TemporaryDirectory(prefix="wheels-", dir=scratch_dir()) as tmp:
            req_file = Path(tmp) / "requirements.txt"
            req_file.write_text("\n".join(reqs) + "\n")
            dest = Path(tmp) / "wheels"
            argv = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--dest",
                str(dest),
                "--only-binary=:all:",
                "--python-version",
                PYTHON[0],
                "--implementation",
                "cp",
                "--abi",
                PYTHON[1],
                *(f"--platform={platform}" for platform in PLATFORMS),
                "--constraint",
                str(CONSTRAINTS),
                "--requirement",
                str(req_file),
            ]
            run_step(
                argv,
                "pip download",
                Path(tmp) / "pip.log",
                log,
                env=_pip_env(),
                show=lambda line: None,
            )
            names = sorted(p.name for p in dest.glob("*.whl"))
            if any(name.lower().startswith("nvidia") for name in names):
                raise ImagesError(f"NVIDIA wheels were downloaded: {names}")
            _strip_all(dest, log)
            write_local_constraints(dest)
            shutil.move(str(dest), folder)
        mark_complete(folder, recipe())
        remove_stale(folder)
        size = sum(p.stat().st_size for p in folder.glob("*.whl")) / 1e6
        log(
            f"{len(names)} wheels ({size:.0f} MB) ready in {time.monotonic() - start:.0f} s "
            f"under {folder}"
        )
    return folder

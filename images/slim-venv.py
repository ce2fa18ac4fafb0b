"""Make a virtualenv smaller without changing what the images run (standard library only).

Run by both Dockerfiles at the end of their build stage:

    python images/slim-venv.py /opt/venv [--drop site-packages/relative/glob ...]

Always removed: ``__pycache__`` folders (the root filesystem is read-only in the pods, so
nothing is written back; imports compile in memory), type stubs (``*.pyi``), JavaScript
source maps (``*.map``), the ``tests`` folders of the big scientific packages (never
imported at run time), and pyarrow's C++ headers and Cython sources (only for building
extensions against it). Identical files are hard-linked (the wheels ship copies, e.g.
``libarrow_python.so`` three times). ``--drop`` removes more, per image: parts of a
package that the image never imports (the Dockerfile says which and why).
The Dockerfiles import their packages after this, so a wrong removal fails the build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

TESTS_OF = ("numpy", "pandas", "pyarrow", "scipy", "sklearn")
PYARROW_BUILD_ONLY = ("include", "src", "*.pyx", "*.pxd", "*.pxi")
ALWAYS = ("**/__pycache__", "**/*.pyi", "**/*.js.map", "**/*.css.map")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        sys.exit(f"slim-venv: {venv} has no lib/python3*/site-packages")
    return found[0]


def _remove(path: Path) -> int:
    """Delete a file or folder; return the bytes freed."""
    if path.is_symlink() or path.is_file():
        size = path.lstat().st_size
        path.unlink()
        return size
    if path.is_dir():
        size = sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        return size
    return 0


def _dedupe(root: Path) -> int:
    """Hard-link files of identical content (same size first, then sha256)."""
    by_size: dict[int, list[Path]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= 65536:
            by_size.setdefault(path.stat().st_size, []).append(path)
    freed = 0
    for size, paths in by_size.items():
        if len(paths) < 2:
            continue
        first: dict[str, Path] = {}
        for path in sorted(paths):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in first:
                mode = path.stat().st_mode
                path.unlink()
                os.link(first[digest], path)
                os.chmod(path, mode)
                freed += size
            else:
                first[digest] = path
    return freed


def slim(venv: Path, drops: list[str]) -> int:
    """Apply the rules above to ``venv``; return the bytes freed."""
    site = _site_packages(venv)
    freed = 0
    for pattern in ALWAYS:
        for path in sorted(venv.glob(pattern), reverse=True):
            freed += _remove(path)
    for package in TESTS_OF:
        for path in sorted((site / package).glob("**/tests"), reverse=True):
            if path.is_dir():
                freed += _remove(path)
    for pattern in PYARROW_BUILD_ONLY:
        for path in (site / "pyarrow").glob(pattern):
            freed += _remove(path)
    for pattern in drops:
        matched = sorted(site.glob(pattern), reverse=True)
        if not matched:
            sys.exit(f"slim-venv: --drop {pattern} matches nothing under {site}")
        for path in matched:
            freed += _remove(path)
    freed += _dedupe(venv)
    return freed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--drop", action="append", default=[], metavar="GLOB")
    args = parser.parse_args()
    freed = slim(args.venv, args.drop)
    print(f"slim-venv: {freed / 1e6:.0f} MB freed in {args.venv}")


if __name__ == "__main__":
    main()

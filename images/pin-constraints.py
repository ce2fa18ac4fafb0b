"""Write images/constraints.txt and requirements-dev.lock: the exact versions of the
project's dependencies, taken from the installed environment (the one `make venv` builds
and the tests pass on), each with the SHA-256 of its files as PyPI lists them.

- ``images/constraints.txt``: the runtime dependencies and the build backend, with the
  hashes of the files the images install (CPython 3.11, manylinux x86_64). Both
  Dockerfiles install with ``pip install --require-hashes -c images/constraints.txt``,
  so an image gets the versions that were tested and the very files, never whatever is
  newest on the day of the build nor a file swapped on the index.
- ``requirements-dev.lock``: the whole test environment (``.[all,dev]``) and the build
  backend, with hashes for the interpreters named in its header; ``make venv`` installs
  it with ``--require-hashes``, then the project itself with ``--no-deps``.

The hashes come from the package index through pip (``pip install --dry-run --report``
reads them without downloading the files). Run after changing dependencies in
pyproject.toml (needs PyPI):

    .venv/bin/python images/pin-constraints.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

PROJECT = "trainingjob-operator"
EXTRAS = ("trainer", "operator", "ui")
# The build backend of pyproject.toml, pinned too (the venv's own setuptools is older), and
# pip: the images' own (Debian's 23.0) reads no hashes from a constraints file, so the
# builds first install this pip (its line carries its hashes) and continue with it.
BUILD = {"setuptools": "84.2.1", "wheel": "0.48.0", "pip": metadata.version("pip")}
# The trainer image installs xgboost-cpu (the same library without the NVIDIA wheels) in
# place of xgboost; it must be the same release as the tested xgboost.
SAME_VERSION_AS = {"xgboost-cpu": "xgboost"}
OUT = Path(__file__).resolve().parent / "constraints.txt"
DEV_LOCK = Path(__file__).resolve().parents[1] / "requirements-dev.lock"
DEV_EXTRAS = (*EXTRAS, "dashboard", "dev")
# The images' interpreter and platform (tjdevcluster.wheelhouse downloads for the same).
IMAGE_PYTHON = ("3.11", "cp311")
# Interpreters the dev lock also covers (binary wheels for manylinux x86_64), besides
# the one that runs this script.
DEV_PYTHONS = (("3.11", "cp311"), ("3.12", "cp312"), ("3.13", "cp313"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """Every distribution that the project's ``extras`` pull in, with its version."""
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(PROJECT, extras)]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = canonical(req.name)
            if key == PROJECT:  # the "all" extra names the project itself
                continue
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                sys.exit(f"{req.name} (needed by {name}) is not installed; run `make venv`")
            todo.append((req.name, tuple(sorted(req.extras))))
            found[key] = version
    return found


def platform_args(python: tuple[str, str]) -> list[str]:
    """pip's options for binary wheels of CPython ``python`` on manylinux x86_64."""
    from tjdevcluster.wheelhouse import PLATFORMS

    return [
        "--only-binary=:all:",
        "--python-version",
        python[0],
        "--implementation",
        "cp",
        "--abi",
        python[1],
        *(f"--platform={platform}" for platform in PLATFORMS),
    ]


def index_hashes(pins: dict[str, str], target: list[str]) -> dict[str, set[str]]:
    """The SHA-256 of the file pip would install for each pin (``target``: the platform
    options, none for this interpreter), as the index lists it; name → hashes."""
    with tempfile.TemporaryDirectory(prefix="pin-") as tmp:
        requirements = Path(tmp) / "pins.txt"
        requirements.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        report = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        argv += ["--no-deps", "--quiet", "--disable-pip-version-check", "--report", str(report)]
        argv += [*target, "--target", str(Path(tmp) / "target"), "-r", str(requirements)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "pip")
        found: dict[str, set[str]] = {}
        for item in json.loads(report.read_text())["install"]:
            sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
            found.setdefault(canonical(item["metadata"]["name"]), set()).add(sha)
    return found


def pinned_lines(pins: dict[str, str], hashes: dict[str, set[str]]) -> list[str]:
    lines = []
    for name, version in sorted(pins.items()):
        shas = sorted(hashes.get(name, ()))
        # One line a pin, so that `grep '^pip==' FILE` is a requirements file of its own.
        lines.append(f"{name}=={version}" + "".join(f" --hash=sha256:{h}" for h in shas))
    return lines


def write_constraints() -> None:
    pins = closure()
    for name, twin in SAME_VERSION_AS.items():
        if twin in pins:
            pins[name] = pins[twin]
    hashes = index_hashes({**pins, **BUILD}, platform_args(IMAGE_PYTHON))
    lines = [
        "# Generated by images/pin-constraints.py from the tested environment; do not edit.",
        f"# Hashes: the files for CPython {IMAGE_PYTHON[0]} on manylinux x86_64, from PyPI.",
        "# Runtime dependencies of trainingjob-operator[trainer,operator,ui]:",
        *pinned_lines(pins, hashes),
        "# Build backend:",
        *pinned_lines(BUILD, hashes),
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(pins)} pins to {OUT}")


def write_dev_lock() -> None:
    pins = {**closure(DEV_EXTRAS), **BUILD}
    hashes = index_hashes(pins, [])  # this interpreter, sdists allowed
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    covered = [here]
    for python in DEV_PYTHONS:
        if python[1] == here:
            continue
        try:
            more = index_hashes(pins, platform_args(python))
        except RuntimeError as err:  # a pin without a wheel for that interpreter
            print(f"the lock does not cover {python[1]}: {err}")
            continue
        for name, shas in more.items():
            hashes.setdefault(name, set()).update(shas)
        covered.append(python[1])
    lines = [
        "# Generated by images/pin-constraints.py from the tested environment; do not edit.",
        "# The test environment (`make venv`): trainingjob-operator[all,dev] and the build",
        "# backend, installed with pip --require-hashes, then the project with --no-deps.",
        f"# interpreters: {' '.join(covered)} (Linux x86_64)",
        *pinned_lines(pins, hashes),
    ]
    DEV_LOCK.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(pins)} pins to {DEV_LOCK} for {' '.join(covered)}")


def main() -> None:
    write_constraints()
    write_dev_lock()


if __name__ == "__main__":
    main()

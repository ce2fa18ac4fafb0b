"""cgroup v1 folders that a dev-cluster component owns by name (the real node's kubelet
``cgroupRoot``, the kind engine's ``--cgroup-parent``): what runs in them, and removing
them. Development and test scaffolding."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def folders(name: str) -> list[Path]:
    """``/sys/fs/cgroup/<hierarchy>/<name>`` in every mounted hierarchy where it exists."""
    if not ROOT.exists():
        return []
    return sorted(p for p in ROOT.glob(f"*/{name}") if p.is_dir() and not p.parent.is_symlink())


def pids_under(name: str) -> set[int]:
    """Every process in ``name``'s cgroups or below them."""
    pids: set[int] = set()
    for group in folders(name):
        for procs in group.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def remove_tree(name: str, attempts: int = 30) -> list[str]:
    """rmdir ``name``'s cgroups, deepest first (retrying while the kernel lets go of the
    last tasks); the folders that could not be removed."""
    left = []
    for group in folders(name):
        subdirs = sorted(
            (p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for folder in [*subdirs, group]:
            for _ in range(attempts):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                left.append(str(folder))
    return left

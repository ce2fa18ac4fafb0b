"""The image build cache (one folder per recipe, a lock, ``.complete`` stamps) and the
logged, niced subprocess runner that every long step of ``tjctl images build`` uses.

Development and test scaffolding. Layout::

    ${TJ_CACHE_DIR:-~/.cache/trainingjob-operator}/images/
        base-bookworm-<hash>/rootfs.tar   the debootstrap base image (python:3.11-slim)
        wheels-<hash>/*.whl               the wheels of both images, for Python 3.11
        docker/                           the project's own dockerd (data, exec root, logs)
        _build/                           scratch space (build contexts, debootstrap)

A folder counts only once its ``.complete`` stamp exists and holds the same recipe text,
so an interrupted or changed build is simply redone (the same convention as tools.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STAMP = ".complete"
# Below this much free space in the cache a cold build cannot finish (base + wheels +
# dockerd layers of both images take about 6 GB); checked before starting.
MIN_FREE_BYTES = 4 * 1024**3

Log = Callable[[str], None]


class ImagesError(RuntimeError):
    """An image could not be built or loaded; the message says why (no traceback needed)."""


def cache_root() -> Path:
    """``$TJ_CACHE_DIR/images`` (default ``~/.cache/trainingjob-operator/images``)."""
    base = os.environ.get("TJ_CACHE_DIR") or str(Path.home() / ".cache" / "trainingjob-operator")
    return Path(base).expanduser().resolve() / "images"


def scratch_dir() -> Path:
    path = cache_root() / "_build"
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipe_hash(recipe: str) -> str:
    """A short hash naming a cache folder after the recipe that fills it."""
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def is_complete(folder: Path, recipe: str) -> bool:
    stamp = folder / STAMP
    return stamp.is_file() and stamp.read_text() == recipe


def mark_complete(folder: Path, recipe: str) -> None:
    (folder / STAMP).write_text(recipe)


def remove_stale(keep: Path) -> None:
    """Delete the other recipes' folders of the same kind (``base-bookworm-*``, ...)."""
    kind = keep.name.rsplit("-", 1)[0]
    for other in keep.parent.glob(f"{kind}-*"):
        if other != keep and other.is_dir() and other.name.rsplit("-", 1)[0] == kind:
            shutil.rmtree(other, ignore_errors=True)


@contextlib.contextmanager
def locked(name: str, folder: Path | None = None) -> Iterator[None]:
    """Serialize builds of one cache entry across processes (a file lock in ``folder``,
    by default the cache root)."""
    root = folder or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_free_space(folder: Path, need: int = MIN_FREE_BYTES) -> None:
    """Raise ImagesError early when the disk cannot hold a build."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ImagesError(
            f"disk full: only {free / 1024**3:.1f} GB free under {folder}, a build needs "
            f"about {need / 1024**3:.0f} GB (set TJ_CACHE_DIR to a larger disk)"
        )


def _disk_full(text: str) -> bool:
    return "no space left on device" in text.lower()


def disk_full_error(where: Path) -> ImagesError:
    return ImagesError(f"disk full while writing under {where}; free some space and run again")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_step(
    argv: list[str],
    what: str,
    log_file: Path,
    log: Log,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    show: Callable[[str], str | None] | None = None,
    tick: float = 30.0,
) -> None:
    """Run argv at nice 10, its output to ``log_file``; a progress line every ``tick`` s.

    ``show`` may turn an output line into a progress line (or None to keep it quiet).
    A failure raises ImagesError with the tail of the log (or a disk-full message).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    last = [""]
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(tick):
            log(f"  {what}: {time.monotonic() - start:.0f} s elapsed  {last[0][:90]}")

    try:
        with open(log_file, "w") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                preexec_fn=lambda: os.nice(10),  # two cores shared with other builds
            )
            threading.Thread(target=ticker, daemon=True).start()
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                last[0] = line.strip()
                if show is not None and (shown := show(line.rstrip())):
                    log(f"  {shown}")
            rc = proc.wait()
    except FileNotFoundError as exc:
        raise ImagesError(f"{what}: {exc.filename} not found") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full_error(log_file.parent) from None
        raise
    finally:
        done.set()
    if rc != 0:
        tail = _tail(log_file)
        if _disk_full(tail):
            raise disk_full_error(log_file.parent)
        raise ImagesError(f"{what} failed (exit {rc}); end of {log_file}:\n{tail}")
    log(f"  {what}: done in {time.monotonic() - start:.0f} s")


def clean_env(**extra: str) -> dict[str, str]:
    """An environment with nothing of this machine's pip, proxy or CA configuration."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    env["HOME"] = os.environ.get("HOME", "/root")
    env["LANG"] = "C.UTF-8"
    env.update(extra)
    return env

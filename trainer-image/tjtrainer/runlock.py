"""One trainer per run folder at a time.

An advisory ``flock`` on ``run_dir/.trainer.lock``: the kernel drops it when the process
ends, however it ends (SIGKILL included), so a restarted trainer never waits for a dead
one, while a second live trainer on the same folder fails at once instead of corrupting
the first one's progress.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from tjtrainer.errors import RunFolderBusyError

LOCK_FILE = ".trainer.lock"


class RunFolderLock:
    """Context manager holding the run folder's lock (``name``: one of several workers'
    locks, :func:`tjtrainer.workers.lock_name`)."""

    def __init__(self, run_dir: Path, *, name: str = LOCK_FILE) -> None:
        self.path = run_dir / name
        self._fd: int | None = None

    def __enter__(self) -> RunFolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusyError(
                f"another trainer is working in {self.path.parent} (it holds {self.path.name}); "
                "wait for it to end or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def run_folder_busy(run_dir: Path) -> bool:
    """Whether a live trainer holds ``run_dir``'s lock right now."""
    if not (run_dir / LOCK_FILE).exists():
        return False
    try:
        with RunFolderLock(run_dir):
            return False
    except RunFolderBusyError:
        return True

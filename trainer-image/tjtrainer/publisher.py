"""Publishing a run's progress off the trial path: make the journal durable, rewrite
``progress.json``, call ``on_progress``, on a thread of its own.

A trial's end is written to the journal by the worker that ran it (no fsync), which then
starts its next trial at once; this thread fsyncs the journal (every line written so far,
so one fsync covers every trial that ended meanwhile), then writes the newest progress,
then hands that same snapshot to the callback. So ``progress.json`` and the callback never
name a trial that a power loss could take from the journal, and neither the fsyncs nor
the callback's own writes (``tjctl run``'s table row, say) hold up XGBoost: measured on
the development machine, the journal's fsync at each trial end was the largest share of
a run's time outside XGBoost (docs/TRAINER.md, Speed). Snapshots that queue up while one
is being written are coalesced: each is the whole state, so only the newest is written.

The first error (a full disk, a callback that raises) is kept and raised by the next
:meth:`Publisher.submit` or by :meth:`Publisher.flush`: the run stops at its next trial
boundary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from tjtrainer.progress import OnProgress, RunProgress, write_progress
from tjtrainer.search import Timings


class Publisher:
    """Writes the newest submitted snapshot after ``sync()`` (the journal's fsync)."""

    def __init__(
        self,
        run_dir: Path,
        on_progress: OnProgress | None,
        timings: Timings,
    ) -> None:
        self.run_dir = run_dir
        self.on_progress = on_progress
        self.timings = timings
        self.sync: Callable[[], None] = lambda: None  # set once the journal is open
        self._pending: RunProgress | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, progress: RunProgress) -> None:
        """Queue a snapshot (one that later updates do not change) to be published."""
        with self._changed:
            self._raise_error()
            if self._closed:
                raise RuntimeError("the run's progress publisher is closed")
            self._pending = progress
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._publish_loop, name="tj-progress", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def flush(self) -> None:
        """Wait until every submitted snapshot is published; raise the first error."""
        with self._changed:
            self._wait_until_idle()
            self._raise_error()

    def close(self) -> None:
        """Publish what is queued and stop the thread; an error is not raised (it was, or
        will be, by :meth:`submit` or :meth:`flush`)."""
        with self._changed:
            self._wait_until_idle()
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _wait_until_idle(self) -> None:
        """Until nothing is queued or being written, or an error stopped the thread; the
        condition's lock held."""
        while (self._pending is not None or self._busy) and self._error is None:
            self._changed.wait()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _publish_loop(self) -> None:
        while True:
            with self._changed:
                while self._pending is None and not self._closed:
                    self._changed.wait()
                if self._pending is None:
                    return  # closed, nothing left
                progress, self._pending, self._busy = self._pending, None, True
            error: BaseException | None = None
            try:
                started = time.perf_counter()
                self.sync()  # every trial this snapshot names is durable in the journal
                write_progress(self.run_dir, progress)
                self.timings.progress_s += time.perf_counter() - started
                if self.on_progress is not None:
                    self.on_progress(progress)
            except BaseException as exc:  # kept for the run's own thread to raise
                error = exc
            with self._changed:
                self._error, self._busy = error, False
                self._changed.notify_all()
            if error is not None:
                return

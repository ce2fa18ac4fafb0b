"""The UI's connections to ``training_jobs``.

Every read goes through one read-only :class:`~tjcore.store.JobStore` per database
(cached for the server's life); the two writes, submit and cancel, each open a
short-lived writable store. Failures come back as :class:`DataError` whose message says
what failed and where, so the page shows a sentence, never a stack trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tjcore.settings import Settings, redact_text, redact_url
from tjcore.spec import TrainingJobSpec
from tjcore.store import JobRow, JobStore

SOURCE = "ui"
# How long a reader whose table could not be created or upgraded (a database not up yet,
# a read-only volume) is kept before the server tries again.
SETUP_RETRY_SECONDS = 10.0


class DataError(Exception):
    """A query or write that failed, with a message fit for the page."""


def describe_url(url: str) -> str:
    """The database URL without its password."""
    try:
        make_url(url)
    except ArgumentError:
        return "an invalid DATABASE_URL"
    return redact_url(url)


def _first_line(err: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's SQL echo and background link."""
    original = getattr(err, "orig", None) or err
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


@contextmanager
def friendly_errors(action: str, url: str) -> Iterator[None]:
    """Turn database errors inside the block into a :class:`DataError` about ``action``."""
    try:
        yield
    except (SQLAlchemyError, OSError, ValueError) as err:
        raise DataError(
            f"Could not {action}: {redact_text(_first_line(err), url)}. "
            f"Database: {describe_url(url)} "
            "(set by DATABASE_URL or SHARED_DATA_PATH)."
        ) from None


@dataclass(frozen=True)
class Reader:
    """The UI's read-only queries."""

    url: str
    store: JobStore
    setup_problem: str | None = None
    opened_at: float = field(default_factory=time.monotonic)

    def get(self, job_id: int) -> JobRow | None:
        with friendly_errors(f"read training job {job_id}", self.url):
            return self.store.get(job_id)

    def recent(self, *, limit: int) -> list[JobRow]:
        with friendly_errors("list the training jobs", self.url):
            return self.store.list_jobs(limit=limit)


def open_reader(url: str) -> Reader:
    """The read-only reader of ``url``, created once per server.

    The table is first created or upgraded with a writable connection, so that a fresh
    shared volume shows "no jobs yet" instead of "unable to open database file" and a
    seed database gains the newer columns. If that is not allowed (a read-only volume,
    a database that is not up yet) the reader still opens and the problem is kept for
    the page to show; after :data:`SETUP_RETRY_SECONDS` the next page tries again.
    """
    reader = _cached_reader(url)
    if reader.setup_problem and time.monotonic() - reader.opened_at >= SETUP_RETRY_SECONDS:
        _cached_reader.clear()
        reader.store.close()
        reader = _cached_reader(url)
    return reader


@st.cache_resource(show_spinner=False)
def _cached_reader(url: str) -> Reader:
    problem = None
    try:
        with friendly_errors("create or upgrade the training_jobs table", url):
            JobStore(url).close()
    except DataError as err:
        problem = str(err)
    with friendly_errors("open the database read-only", url):
        store = JobStore(url, readonly=True)
    return Reader(url=url, store=store, setup_problem=problem)


def submit_job(url: str, spec: TrainingJobSpec) -> int:
    """Insert a ``pending`` row for ``spec``, as the original design's Start button does; its id."""
    with friendly_errors("start the training job", url):
        limit = Settings.from_env().max_queued_jobs  # TJ_MAX_QUEUED_JOBS
        store = JobStore(url)
        try:
            return store.submit_spec(spec, source=SOURCE, max_pending=limit)
        finally:
            store.close()


def cancel_job(url: str, job_id: int) -> JobRow:
    """Ask job ``job_id`` to stop after its current trial (a pending one stops at once).

    Raises:
        DataError: no such job, the job has ended already, or the write failed.
    """
    with friendly_errors(f"cancel training job {job_id}", url):
        store = JobStore(url)
        try:
            return store.request_cancel(job_id)
        except (LookupError, ValueError) as err:
            raise DataError(str(err.args[0])) from None
        finally:
            store.close()

"""Database passwords never reach a log line or an error message."""

from __future__ import annotations

import pytest

from tjcore.settings import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://tj:s3cret@db.example:5432/jobs", "postgresql://tj:***@db.example:5432/jobs"),
        ("postgresql+psycopg://tj:p%40ss%3Aw0rd@db/jobs", "postgresql+psycopg://tj:***@db/jobs"),
        ("sqlite:////data/training_jobs.db", "sqlite:////data/training_jobs.db"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_unparsable_url_loses_its_password_too() -> None:
    url = "postgres ql://tj:s3cret@db/jobs"
    assert "s3cret" not in redact_url(url)


def test_messages_lose_the_password_in_any_form() -> None:
    url = "postgresql://tj:p%40ss@db/jobs"
    message = "could not connect to postgresql://tj:p%40ss@db/jobs: password 'p@ss' refused"
    cleaned = redact_text(message, url)
    assert "p@ss" not in cleaned and "p%40ss" not in cleaned
    assert "postgresql://tj:***@db/jobs" in cleaned

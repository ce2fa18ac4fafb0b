"""Retries of the Kubernetes API calls: one layer, kopf's. A call is made once; a
transient answer becomes kopf.TemporaryError with a capped, jittered delay (the server's
Retry-After first), and kopf runs the handler again; other answers are raised as they are.

The failing call is a plain function raising the client's own ApiException: a real API
server cannot be made to answer 503 on demand."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from tjoperator import kube


def test_the_delay_is_capped_and_jittered_and_honours_retry_after() -> None:
    delays = {kube.retry_delay() for _ in range(40)}
    assert len(delays) > 1, "no jitter: every object's handler retries in step"
    assert all(kube.RETRY_SECONDS / 2 <= d <= kube.RETRY_SECONDS for d in delays)
    assert kube.retry_delay("3") == 3.0
    assert kube.retry_delay("86400") == kube.RETRY_CAP_SECONDS  # Retry-After, capped
    assert kube.retry_delay("Wed, 21 Oct 2026 07:28:00 GMT") <= kube.RETRY_CAP_SECONDS


def test_a_transient_answer_is_tried_once_and_handed_to_kopf_with_its_delay() -> None:
    calls = []

    def busy() -> None:
        calls.append(1)
        raise kube.ApiException(status=429, reason="Too Many Requests")

    def unavailable() -> None:
        calls.append(1)
        err = kube.ApiException(status=503, reason="Service Unavailable")
        err.headers = {"Retry-After": "4"}
        raise err

    with pytest.raises(kopf.TemporaryError) as raised:
        asyncio.run(kube.call(unavailable))
    assert raised.value.delay == 4.0
    assert str(raised.value).startswith("the API answered 503 (Service Unavailable)")
    with pytest.raises(kopf.TemporaryError) as raised:
        asyncio.run(kube.call(busy))
    assert raised.value.delay is not None and raised.value.delay <= kube.RETRY_SECONDS
    assert len(calls) == 2, "a call retried on its own: two retry layers"


def test_permanent_errors_are_raised_as_they_are() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise kube.ApiException(status=422)

    with pytest.raises(kube.ApiException) as raised:
        asyncio.run(kube.call(refused))
    assert not isinstance(raised.value, kopf.TemporaryError) and raised.value.status == 422
    with pytest.raises(kube.ApiException):
        kube.counted(refused)  # the table bridge's: once, tried again at its next pass
    assert len(calls) == 2

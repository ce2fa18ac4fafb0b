"""Retries of the Kubernetes API calls: capped, jittered, and never asleep in a thread of
the event loop's shared executor (where kopf and every handler's blocking call run).

The failing call is a plain function raising the client's own ApiException: a real API
server cannot be made to answer 503 on demand."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tjoperator import kube


def test_the_back_off_is_capped_and_jittered() -> None:
    delays = [kube.retry_delay(attempt) for attempt in range(12) for _ in range(20)]
    assert max(delays) <= kube.RETRY_CAP_SECONDS
    late = {kube.retry_delay(10) for _ in range(20)}
    assert len(late) > 1, "no jitter: every caller retries in step"
    assert all(kube.RETRY_CAP_SECONDS / 2 <= d <= kube.RETRY_CAP_SECONDS for d in late)
    assert kube.retry_delay(0, "3") == 3.0
    assert kube.retry_delay(0, "86400") == kube.RETRY_CAP_SECONDS  # Retry-After, capped
    assert kube.retry_delay(0, "Wed, 21 Oct 2026 07:28:00 GMT") <= kube.RETRY_CAP_SECONDS


def test_a_retrying_call_holds_no_executor_thread_while_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kube, "RETRY_BASE_SECONDS", 0.8)
    answers = [kube.ApiException(status=503), kube.ApiException(status=503)]

    def flaky() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    async def scenario() -> tuple[str, float, float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        start = time.monotonic()
        retried = asyncio.create_task(kube.call(flaky))
        await asyncio.sleep(0.1)  # the call is waiting for its second attempt now
        await asyncio.to_thread(time.sleep, 0)  # another handler's blocking call
        other = time.monotonic() - start
        result = await retried
        return result, other, time.monotonic() - start

    result, other, total = asyncio.run(scenario())
    assert result == "done" and not answers
    assert total >= 0.4 * 3  # it did wait between the attempts (at least half of each)
    assert other < 0.4, f"another call waited {other:.2f} s for the retrying one"


def test_permanent_errors_are_not_retried() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise kube.ApiException(status=422)

    with pytest.raises(kube.ApiException):
        asyncio.run(kube.call(refused))
    with pytest.raises(kube.ApiException):
        kube.retrying(refused)
    assert len(calls) == 2

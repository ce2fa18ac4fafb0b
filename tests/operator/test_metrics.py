"""The operator's Prometheus metrics (tjoperator.metrics) and its metrics endpoint flags;
the numbers of a real run are checked in tests/cluster/test_operator_metrics_e2e.py."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tjoperator import kube, metrics
from tjoperator.config import OperatorConfig
from tjtrainer.progress import RunProgress, TrialRecord

TJCTL = str(Path(sys.executable).with_name("tjctl"))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def trial(n: int, model: str, state: str, finished: datetime) -> TrialRecord:
    return TrialRecord(
        trial=n,
        model=model,
        number=n,
        state=state,
        spearman=None,
        best_so_far=None,
        params={},
        duration_s=2.5,
        finished_at=finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


def test_trials_count_once_each_and_not_those_before_the_operator_started() -> None:
    started = datetime.fromtimestamp(metrics.STARTED, UTC)
    now = datetime.now(UTC)
    progress = RunProgress(timeframe="15m", n_trials=3, total_trials=6)
    progress.trials = [
        trial(1, "MODEL_A", "complete", started - timedelta(hours=1)),  # a resumed run's
        trial(2, "MODEL_A", "pruned", now),
    ]
    before = sample("tj_trial_status_lag_seconds_count")
    metrics.status_published("uid-1", progress, "Running")
    metrics.status_published("uid-1", progress, "Running")  # the same trials again
    progress.trials.append(trial(3, "MODEL_A", "complete", now))
    metrics.status_published("uid-1", progress, "Succeeded")
    assert sample("tj_trials_finished_total", model="MODEL_A", state="complete") == 1
    assert sample("tj_trials_finished_total", model="MODEL_A", state="pruned") == 1
    assert sample("tj_trial_duration_seconds_count", model="MODEL_A") == 2
    assert sample("tj_trial_duration_seconds_sum", model="MODEL_A") == 5.0
    assert sample("tj_trial_status_lag_seconds_count") - before == 2
    assert "uid-1" not in metrics._seen  # forgotten once final


def test_the_phase_gauge_follows_each_trainingjob_until_it_is_deleted() -> None:
    metrics.phase_seen("ns-g", "a", "Running")
    metrics.phase_seen("ns-g", "b", "Running")
    assert sample("tj_trainingjobs", phase="Running") == 2
    metrics.phase_seen("ns-g", "a", "Succeeded")
    metrics.phase_seen("ns-g", "b", None)
    assert sample("tj_trainingjobs", phase="Running") == 0
    assert sample("tj_trainingjobs", phase="Succeeded") == 1
    assert sample("tj_trainingjobs", phase="Cancelled") == 0  # every phase is listed


def test_metrics_port_from_the_environment_and_a_bad_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path))
    assert OperatorConfig.from_env().metrics_port is None  # no endpoint unless asked
    monkeypatch.setenv("TJ_METRICS_PORT", "9100")
    monkeypatch.setenv("TJ_METRICS_ADDRESS", "127.0.0.1")
    config = OperatorConfig.from_env()
    assert (config.metrics_port, config.metrics_address) == (9100, "127.0.0.1")
    assert OperatorConfig.from_env(metrics_port="9200").metrics_port == 9200
    monkeypatch.setenv("TJ_METRICS_PORT", "70000")
    with pytest.raises(ValueError, match="TJ_METRICS_PORT must be a TCP port number"):
        OperatorConfig.from_env()


def test_a_metrics_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "SHARED_DATA_PATH": str(tmp_path), "KUBECONFIG": "/nonexistent"}
        argv = [TJCTL, "operator", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot serve metrics on 127.0.0.1:{port} ")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_handler_that_raises_and_an_api_error_answer_are_counted() -> None:
    @metrics.counts_errors
    async def broken_handler(**_: object) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        asyncio.run(broken_handler(name="x"))
    assert sample("tj_reconcile_errors_total", handler="broken_handler") == 1

    def forbidden() -> None:
        raise kube.ApiException(status=403, reason="Forbidden")

    before = sample("tj_api_errors_total", code="403")
    with pytest.raises(kube.ApiException):
        asyncio.run(kube.call(forbidden))  # not retried: counted once
    assert sample("tj_api_errors_total", code="403") == before + 1

"""The operator's Prometheus endpoint end to end: the real `tjctl operator` with
``--metrics-port`` on loopback runs two small TrainingJobs against the real control plane
(the pod harness runs the real trainer); the scraped numbers are those of the runs."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.operator_env import running_operator
from tjtrainer.progress import read_progress

NAMESPACE = "tj-metrics"
SMALL = {"timeframe": "15m", "nTrials": 2, "trainRatio": 0.8, "seed": 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_metrics_endpoint_counts_what_ran(cluster: Any, tmp_path: Path) -> None:
    port = free_port()
    args = ("--no-bridge", "-n", NAMESPACE, "--metrics-port", str(port))
    with running_operator(
        cluster,
        tmp_path,
        args=(*args, "--metrics-address", "127.0.0.1"),
        namespaces=(NAMESPACE,),
    ) as env:
        names = ("metrics-a", "metrics-b")
        for name in names:
            env.apply(NAMESPACE, name, **{**SMALL, "seed": names.index(name) + 1})
        for name in names:
            assert env.wait_phase(NAMESPACE, name, "Succeeded", "Failed")["phase"] == "Succeeded"

        expected: Counter[tuple[str, str]] = Counter()
        durations: Counter[str] = Counter()
        for name in names:
            run_dir = env.run_dir(NAMESPACE, name)
            progress = read_progress(run_dir) if run_dir else None
            assert progress is not None
            for model, counts in progress.trial_counts.items():
                for state, count in counts.items():
                    expected[(model, state)] += count
            for trial in progress.trials:
                durations[trial.model] += trial.duration_s
        trials = sum(expected.values())
        assert trials == 8, expected  # 2 models × 2 trials × 2 jobs

        listed = json.loads(
            env.kubectl("get", "trainingjobs", "-n", NAMESPACE, "-o", "json").stdout
        )
        phases = Counter(item["status"]["phase"] for item in listed["items"])
        assert phases == {"Succeeded": 2}

        def settled() -> dict[Any, float] | None:
            samples = scrape(port)
            return samples if value(samples, "tj_trainingjobs", phase="Succeeded") == 2 else None

        samples = env.wait_for("the phase gauge to show 2 Succeeded", settled, timeout=30)
        print("\n".join(f"{k} {v}" for k, v in sorted(samples.items()) if k[0].startswith("tj_")))
        for phase in ("Pending", "Running", "Failed", "Cancelled"):
            assert value(samples, "tj_trainingjobs", phase=phase) == 0
        for (model, state), count in expected.items():
            got = value(samples, "tj_trials_finished_total", model=model, state=state)
            assert got == count, (model, state, got, count)
        assert sum(v for (n, _), v in samples.items() if n == "tj_trials_finished_total") == trials
        for model, total in durations.items():
            assert value(samples, "tj_trial_duration_seconds_count", model=model) == 4
            got = value(samples, "tj_trial_duration_seconds_sum", model=model)
            assert got == pytest.approx(total, rel=1e-6)
        # Every trial reached the status once, each within the poll interval or so.
        assert value(samples, "tj_trial_status_lag_seconds_count") == trials
        assert value(samples, "tj_trial_status_lag_seconds_bucket", le="30.0") == trials
        assert value(samples, "tj_table_write_errors_total", operation="update_job") == 0

"""Operator latency and scale on the real local control plane.

Measures, with the real `tjctl operator`, the real Job controller and the real trainer
run by the pod harness:

1. apply → Job created (p50/p95 over several TrainingJobs);
2. trial end → CR status and → table row (p50/p95 over a run of at least 40 trials),
   against two baselines from the same run: the API floor (a status patch until its
   watch event arrives) and the seed's design (a daemon polling the table every 30 s,
   the UI every 3 s) evaluated on the same trial end times;
3. N TrainingJobs at once (default 50): all reach a final phase; the operator's peak RSS.

Run: .venv/bin/python bench/operator_latency.py [--trials 20] [--scale 50]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.operator_env import CLAIM, OperatorProcess, make_dataset  # noqa: E402
from tjcontract.names import GROUP, PLURAL, VERSION  # noqa: E402
from tjcontract.spec import DEFAULT_TRAIN_RATIO  # noqa: E402
from tjcore.store import JobStore  # noqa: E402
from tjdevcluster.testing import running_cluster  # noqa: E402
from tjdevcluster.tools import ensure_tools  # noqa: E402
from tjtrainer.progress import latest_run_dir, read_progress  # noqa: E402

FINAL = {"Succeeded", "Failed", "Cancelled"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def body(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"timeframe": "15m", "trainRatio": DEFAULT_TRAIN_RATIO, **spec},
    }


class StatusWatcher(threading.Thread):
    """Records when each TrainingJob's status first shows each trial count and phase."""

    def __init__(self, namespace: str) -> None:
        super().__init__(daemon=True)
        self.namespace = namespace
        self.trial_seen: dict[tuple[str, int], float] = {}
        self.phase: dict[str, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        # The watch ends with a protocol error when the cluster stops at the end.
        with contextlib.suppress(Exception):
            self._watch()

    def _watch(self) -> None:
        api = client.CustomObjectsApi()
        while not self.stop.is_set():
            stream = watch.Watch().stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                timeout_seconds=30,
            )
            for event in stream:
                now = time.time()
                obj = event["object"]
                name, status = obj["metadata"]["name"], obj.get("status") or {}
                trial = int(status.get("currentTrial") or 0)
                for k in range(1, trial + 1):
                    self.trial_seen.setdefault((name, k), now)
                if status.get("phase"):
                    self.phase[name] = status["phase"]
                if self.stop.is_set():
                    return


class JobWatcher(threading.Thread):
    """Records when each trainer Job is first seen."""

    def __init__(self, namespace: str) -> None:
        super().__init__(daemon=True)
        self.namespace = namespace
        self.created: dict[str, float] = {}

    def run(self) -> None:
        with contextlib.suppress(Exception):
            self._watch()

    def _watch(self) -> None:
        stream = watch.Watch().stream(
            client.BatchV1Api().list_namespaced_job, self.namespace, timeout_seconds=600
        )
        for event in stream:
            self.created.setdefault(event["object"].metadata.name, time.time())


class RowPoller(threading.Thread):
    """Records when the table row first shows each trial count (20 ms polling)."""

    def __init__(self, store: JobStore, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.store, self.namespace, self.name = store, namespace, name
        self.trial_seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            row = self.store.get_by_name(self.namespace, self.name)
            if row is not None:
                now = time.time()
                for k in range(1, row.current_trial + 1):
                    self.trial_seen.setdefault(k, now)


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return


def api_floor(namespace: str, name: str, samples: int = 20) -> list[float]:
    """Patch the status of an idle TrainingJob and time until the watch shows it."""
    api = client.CustomObjectsApi()
    api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body(namespace, name, nTrials=1, cancel=True)
    )
    time.sleep(2)
    lags = []
    for i in range(samples):
        seen = threading.Event()

        def watch_once(marker: str, seen: threading.Event = seen) -> None:
            w = watch.Watch()
            for event in w.stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                timeout_seconds=10,
            ):
                if (event["object"].get("status") or {}).get("message") == marker:
                    seen.set()
                    w.stop()

        marker = f"floor-{i}"
        thread = threading.Thread(target=watch_once, args=(marker,), daemon=True)
        thread.start()
        time.sleep(0.3)
        start = time.time()
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": {"message": marker}}
        )
        if seen.wait(10):
            lags.append(time.time() - start)
    return lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per model (≥ 20)")
    parser.add_argument("--applies", type=int, default=10, help="TrainingJobs for apply→Job")
    parser.add_argument("--scale", type=int, default=50, help="TrainingJobs at once")
    args = parser.parse_args()

    tools = ensure_tools()
    with (
        tempfile.TemporaryDirectory(prefix="tj-bench-") as tmp,
        running_cluster(Path(tmp) / "cluster", tools) as cluster,
    ):
        shared = cluster.pvc_dir(CLAIM)
        shared.mkdir(parents=True, exist_ok=True)
        make_dataset(shared, "15m", 3000)
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "crd.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.mltraining.dev")
        database_url = f"sqlite:///{shared / 'training_jobs.db'}"
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "SHARED_DATA_PATH": str(shared),
            "DATABASE_URL": database_url,
        }
        operator = OperatorProcess(
            env=env, log_path=Path(tmp) / "operator.log", args=["--no-bridge"]
        )
        operator.start()
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.CustomObjectsApi()
        store = JobStore(database_url)
        ns = "bench"
        cluster.kubectl("create", "namespace", ns)
        assert operator.proc is not None
        memory = MemorySampler(operator.proc.pid)
        memory.start()
        time.sleep(3)

        # 0. The API floor.
        floor = api_floor(ns, "floor")

        # 1. apply → Job created.
        jobs = JobWatcher(ns)
        jobs.start()
        time.sleep(0.5)
        applied: dict[str, float] = {}
        for i in range(args.applies):
            name = f"apply-{i}"
            applied[name] = time.time()
            api.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, body(ns, name, nTrials=1)
            )
            time.sleep(0.5)
        deadline = time.time() + 60
        while time.time() < deadline and len(
            [n for n in applied if f"{n}-train" in jobs.created]
        ) < len(applied):
            time.sleep(0.1)
        apply_lags = [
            jobs.created[f"{n}-train"] - t
            for n, t in applied.items()
            if f"{n}-train" in jobs.created
        ]

        # 2. trial end → CR status and → row.
        statuses = StatusWatcher(ns)
        statuses.start()
        run_name = "latency"
        rows = RowPoller(store, ns, run_name)
        rows.start()
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body(ns, run_name, nTrials=args.trials)
        )
        deadline = time.time() + 900
        while time.time() < deadline and statuses.phase.get(run_name) not in FINAL:
            time.sleep(0.2)
        time.sleep(1)
        run_dir = latest_run_dir(shared, ns, run_name)
        progress = read_progress(run_dir) if run_dir else None
        assert progress is not None, "no progress written"
        ends = {t.trial: epoch(t.finished_at) for t in progress.trials}
        cr_lags = [
            statuses.trial_seen[(run_name, k)] - end
            for k, end in ends.items()
            if (run_name, k) in statuses.trial_seen
        ]
        row_lags = [rows.trial_seen[k] - end for k, end in ends.items() if k in rows.trial_seen]
        seed_lags = [30 - (end % 30) + 3 - (end % 3) for end in ends.values()]

        # 3. N TrainingJobs at once.
        start = time.time()
        for i in range(args.scale):
            api.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, body(ns, f"scale-{i}", nTrials=1, seed=i)
            )
        deadline = time.time() + 1800
        names = [f"scale-{i}" for i in range(args.scale)]
        while time.time() < deadline and not all(statuses.phase.get(n) in FINAL for n in names):
            time.sleep(1)
        scale_time = time.time() - start
        final = [n for n in names if statuses.phase.get(n) in FINAL]
        succeeded = [n for n in names if statuses.phase.get(n) == "Succeeded"]
        memory.stop.set()
        statuses.stop.set()
        rows.stop.set()
        operator.stop()

    def line(label: str, values: list[float]) -> str:
        if not values:
            return f"{label:38s} no samples"
        return (
            f"{label:38s} p50 {statistics.median(values) * 1000:8.0f} ms   "
            f"p95 {pct(values, 0.95) * 1000:8.0f} ms   (n={len(values)})"
        )

    print()
    print(line("API floor: status patch → watch", floor))
    print(line("apply → Job created", apply_lags))
    print(line("trial end → CR status", cr_lags))
    print(line("trial end → table row", row_lags))
    print(line("seed design (poll 30 s + UI 3 s)", seed_lags))
    if cr_lags and floor:
        print(
            f"progress lag / API floor (p50):        "
            f"{statistics.median(cr_lags) / statistics.median(floor):6.1f}x"
        )
    if cr_lags and seed_lags:
        print(
            f"progress lag / seed design (p95):      "
            f"{pct(cr_lags, 0.95) / pct(seed_lags, 0.95):6.3f}"
        )
    print(
        f"{args.scale} TrainingJobs at once: {len(final)} final ({len(succeeded)} Succeeded) "
        f"in {scale_time:.0f} s; operator peak RSS {memory.peak / 2**20:.0f} MB"
    )
    return 0 if len(final) == args.scale else 1


if __name__ == "__main__":
    raise SystemExit(main())

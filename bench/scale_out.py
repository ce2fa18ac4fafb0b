"""Scale-out: one run of 2 × nTrials trials with spec.workers 1, 2, 4 on the dev cluster.

The real `tjctl operator`, the real Job controller (an Indexed Job for workers > 1), the pod
harness running the real trainer processes, and a throwaway real PostgreSQL server holding
the table and (workers > 1) the shared studies. Per worker count: wall time (apply →
Succeeded), trials per minute, the speed-up over one worker and its efficiency per core
used (trials at once are capped by the machine's cores), database transactions per trial
(pg_stat_database: the trainers' studies and the operator's table writes together), and
trial end → CR status lag (p50/p95).

Run: .venv/bin/python bench/scale_out.py [--trials 30] [--workers 1,2,4] [--parallelism 1]
[--rows 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from operator_latency import FINAL, StatusWatcher, body, epoch, pct  # noqa: E402

from tests.cluster.operator_env import CLAIM, OperatorProcess, make_dataset  # noqa: E402
from tjcontract.names import GROUP, PLURAL, VERSION  # noqa: E402
from tjcontract.spec import DEFAULT_N_TRIALS  # noqa: E402
from tjdevcluster.postgres import PostgresServer  # noqa: E402
from tjdevcluster.testing import running_cluster  # noqa: E402
from tjdevcluster.tools import ensure_tools  # noqa: E402
from tjtrainer.cpus import available_cpus  # noqa: E402
from tjtrainer.progress import latest_run_dir, read_progress  # noqa: E402

SECRET, KEY = "tj-database", "url"


def transactions(server: PostgresServer) -> int:
    """Committed and rolled-back transactions of the bench's database so far."""
    with server.admin() as connection:
        row = connection.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (server.database,),
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


def one_run(
    api: Any, statuses: StatusWatcher, server: PostgresServer, shared: Path, ns: str, **spec: Any
) -> dict[str, Any]:
    name = f"scale-w{spec['workers']}"
    time.sleep(2)  # the statistics of earlier work settle
    before = transactions(server)
    started = time.time()
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body(ns, name, **spec))
    deadline = started + 1800
    while time.time() < deadline and statuses.phase.get(name) not in FINAL:
        time.sleep(0.2)
    wall = time.time() - started
    time.sleep(2)
    used = transactions(server) - before
    run_dir = latest_run_dir(shared, ns, name)
    progress = read_progress(run_dir) if run_dir else None
    assert progress is not None and statuses.phase.get(name) == "Succeeded", statuses.phase
    ends = {t.trial: epoch(t.finished_at) for t in progress.trials if t.state != "failed"}
    lags = [
        statuses.trial_seen[(name, k)] - e
        for k, e in ends.items()
        if (name, k) in statuses.trial_seen
    ]
    trials = progress.completed_trials
    return {
        "workers": spec["workers"],
        "wall": wall,
        "trials": trials,
        "per_minute": 60 * trials / wall,
        "transactions": used / max(1, trials),
        "lags": lags,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=DEFAULT_N_TRIALS, help="trials per model (spec.nTrials)"
    )
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run")
    parser.add_argument("--parallelism", type=int, default=1, help="trials at once per pod")
    parser.add_argument(
        "--rows", type=int, default=20000, help="rows of the synthetic 15m dataset (trial size)"
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    tools = ensure_tools()
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="tj-bench-") as tmp,
        PostgresServer() as server,
        running_cluster(Path(tmp) / "cluster", tools) as cluster,
    ):
        shared = cluster.pvc_dir(CLAIM)
        shared.mkdir(parents=True, exist_ok=True)
        make_dataset(shared, "15m", args.rows)
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "crd.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.mltraining.dev")
        ns = "bench"
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl(
            "create", "secret", "generic", SECRET, "-n", ns, f"--from-literal={KEY}={server.url}"
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "SHARED_DATA_PATH": str(shared),
            "DATABASE_URL": server.url,
            "TJ_DATABASE_SECRET_NAME": SECRET,
            "TJ_DATABASE_SECRET_KEY": KEY,
        }
        operator = OperatorProcess(
            env=env, log_path=Path(tmp) / "operator.log", args=["--no-bridge"]
        )
        operator.start()
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.CustomObjectsApi()
        statuses = StatusWatcher(ns)
        statuses.start()
        time.sleep(3)
        try:
            for workers in counts:
                results.append(
                    one_run(
                        api,
                        statuses,
                        server,
                        shared,
                        ns,
                        nTrials=args.trials,
                        seed=1,
                        parallelism=args.parallelism,
                        workers=workers,
                    )
                )
                print(f"workers {workers}: {results[-1]['wall']:.1f} s", flush=True)
        finally:
            statuses.stop.set()
            operator.stop()

    cores = available_cpus()
    base = results[0]["per_minute"] if results and results[0]["workers"] == 1 else None
    print()
    print(
        f"{2 * args.trials} trials on {args.rows} rows, parallelism {args.parallelism} per pod, "
        f"{cores} cores"
    )
    columns = ["workers", "wall s", "trials/min", "speed-up", "efficiency per core"]
    columns += ["db transactions/trial", "trial end → CR p50 / p95"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        speedup = r["per_minute"] / base if base else float("nan")
        used = min(cores, r["workers"] * args.parallelism)
        lags = r["lags"]
        lag = (
            f"{statistics.median(lags) * 1000:.0f} / {pct(lags, 0.95) * 1000:.0f} ms"
            if lags
            else "-"
        )
        print(
            f"| {r['workers']} | {r['wall']:.1f} | {r['per_minute']:.1f} | {speedup:.2f}x | "
            f"{speedup / used:.2f} | {r['transactions']:.1f} | {lag} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Figures on the real node (``tjctl dev-cluster up --node kubelet``): a real kubelet on
containerd, a bridge CNI and kube-proxy in a network namespace with no route off the machine.

1. image build (warm: cached) times and sizes, and their load time into the node's containerd;
2. cold ``up`` (fresh state dir; the node's containerd empty, so loading the images is a
   separate figure) and warm ``up`` (the same state dir again after ``stop_processes()``);
3. apply → Job created and apply → trainer container running (watch time of the first
   ``Running`` pod status), p50/p95 over N sequential TrainingJobs (nTrials 1), against a
   bare pod of the same image and pod spec created directly (the kubelet/containerd floor);
4. trial end (the trainer's progress file on the local PV, read from the host, read-only)
   → CR status (watch), p50/p95 over ≥ 40 trials, against the API floor (a status patch
   until its watch event), idle and while the trainer runs.

Needs root. Everything runs in a fresh temp state dir on free ports (never a user's dev
cluster) and is stopped at the end, on Ctrl-C and on SIGTERM too.

Run: sudo .venv/bin/python bench/node_latency.py [--applies 10] [--trials 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

from kubernetes import client, config, watch

from tjcontract.names import GROUP, PLURAL, VERSION
from tjcontract.spec import DEFAULT_TRAIN_RATIO
from tjdevcluster import dockerd
from tjdevcluster.controlplane import ControlPlaneError
from tjdevcluster.imagecache import ImagesError
from tjdevcluster.images import build_images, load_images
from tjdevcluster.netns import NetnsError
from tjdevcluster.node import NodeError
from tjdevcluster.procs import PortInUseError
from tjdevcluster.testing import Cluster, running_cluster
from tjdevcluster.tools import ToolsError, ensure_tools
from tjtrainer.progress import latest_run_dir, read_progress

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "trainingjob-operator"
VALUES = CHART / "ci" / "dev-cluster-values.yaml"
RELEASE = "tj"
FULLNAME = f"{RELEASE}-trainingjob-operator"
NAMESPACE = "tj-bench"
FINAL = {"Succeeded", "Failed", "Cancelled"}
TARGET_RUNNING_P95 = 5.0  # the Kubernetes pod-startup SLO
TARGET_STATUS_P95 = 2.0
T = TypeVar("T")


class BenchError(RuntimeError):
    """A step of the bench did not happen in time; the message says which."""


# -- small helpers ------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with n = 10, p95 is the maximum)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll check() every 50 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Recorder:
    """Log lines (to stderr) with their monotonic time, so figures can be read off them."""

    lines: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self, message: str) -> None:
        self.lines.append((time.monotonic(), message))
        print(f"  | {message}", file=sys.stderr, flush=True)

    def first_after(self, start: float, pattern: str) -> float | None:
        """Seconds from start to the first line after start that matches pattern."""
        for when, message in self.lines:
            if when >= start and re.search(pattern, message):
                return round(when - start, 2)
        return None


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(statistics.median(values), 3),
        "p95_s": round(pct(values, 0.95), 3),
        "min_s": round(min(values), 3),
        "max_s": round(max(values), 3),
        "samples_s": [round(v, 3) for v in values],
    }


# -- watches ----------------------------------------------------------------------------------
class Watcher(threading.Thread):
    """A watch of one kind in the bench namespace; subclasses record what they need."""

    def __init__(self, list_call: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self.list_call, self.args = list_call, args
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            # The watch ends with a protocol error when the cluster stops at the end.
            with contextlib.suppress(Exception):
                for event in watch.Watch().stream(self.list_call, *self.args, timeout_seconds=3600):
                    self.seen(time.time(), event["object"])
                    if self.stop.is_set():
                        return
            self.stop.wait(0.2)

    def seen(self, now: float, obj: Any) -> None:
        raise NotImplementedError


class PodWatcher(Watcher):
    """When each pod was first seen and first reported Running (and its startedAt)."""

    def __init__(self, namespace: str) -> None:
        super().__init__(client.CoreV1Api().list_namespaced_pod, namespace)
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.phase: dict[str, str] = {}
        self.job: dict[str, str] = {}

    def seen(self, now: float, obj: Any) -> None:
        name = obj.metadata.name
        self.created.setdefault(name, now)
        job = (obj.metadata.labels or {}).get("job-name")
        if job:
            self.job[name] = job
        self.phase[name] = obj.status.phase or ""
        for status in obj.status.container_statuses or []:
            running = status.state.running if status.state else None
            if running is not None:
                self.running.setdefault(name, now)
                if running.started_at is not None:
                    self.started_at.setdefault(name, running.started_at.timestamp())

    def pod_of_job(self, job: str) -> str | None:
        return next((pod for pod, owner in self.job.items() if owner == job), None)


class JobWatcher(Watcher):
    """When each Job was first seen."""

    def __init__(self, namespace: str) -> None:
        super().__init__(client.BatchV1Api().list_namespaced_job, namespace)
        self.created: dict[str, float] = {}

    def seen(self, now: float, obj: Any) -> None:
        self.created.setdefault(obj.metadata.name, now)


class StatusWatcher(Watcher):
    """When each TrainingJob's status first showed each trial count, and its phase."""

    def __init__(self, namespace: str) -> None:
        super().__init__(
            client.CustomObjectsApi().list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
        )
        self.trial_seen: dict[tuple[str, int], float] = {}
        self.phase: dict[str, str] = {}

    def seen(self, now: float, obj: Any) -> None:
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        for k in range(1, int(status.get("currentTrial") or 0) + 1):
            self.trial_seen.setdefault((name, k), now)
        if status.get("phase"):
            self.phase[name] = status["phase"]


Watchers = tuple[PodWatcher, JobWatcher, StatusWatcher]


def trainingjob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"timeframe": "15m", "trainRatio": DEFAULT_TRAIN_RATIO, **spec},
    }


def api_floor(name: str, samples: int, gap: float = 0.3) -> list[float]:
    """Patch the status of a finished TrainingJob; seconds until a watch shows the patch."""
    api = client.CustomObjectsApi()
    lags = []
    for i in range(samples):
        seen = threading.Event()
        marker = f"floor-{time.time():.6f}-{i}"

        def watch_once(marker: str = marker, seen: threading.Event = seen) -> None:
            w = watch.Watch()
            with contextlib.suppress(Exception):
                for event in w.stream(
                    api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=10,
                ):
                    if (event["object"].get("status") or {}).get("message") == marker:
                        seen.set()
                        w.stop()

        thread = threading.Thread(target=watch_once, daemon=True)
        thread.start()
        time.sleep(gap)
        start = time.time()
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": {"message": marker}}
        )
        if seen.wait(10):
            lags.append(time.time() - start)
        thread.join(12)
    return lags


# -- the phases ---------------------------------------------------------------------------------
def ctr_images(socket: Path) -> list[str]:
    ctr = shutil.which("ctr") or "/usr/bin/ctr"
    out = subprocess.run(
        [ctr, "--address", str(socket), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def images_phase(cluster: Cluster, log: Recorder) -> dict[str, Any]:
    """Build (cached) both images in the private dockerd and load each into containerd."""
    socket = cluster.control_plane.config.containerd_socket
    start = time.monotonic()
    with dockerd.running(log) as engine:
        engine_s = log.first_after(start, r"^dockerd running in network namespace")
        built_at = time.monotonic()
        images = build_images(log, engine=engine)
        build_s = time.monotonic() - built_at
        loads: dict[str, float] = {}
        for info in images.values():
            t0 = time.monotonic()
            load_images(socket, [info.ref], log, engine)
            loads[info.ref] = time.monotonic() - t0
    return {
        "engine_up_s": engine_s,  # includes the wait for the dockerd lock
        "build_all_s": round(build_s, 1),
        "images": [
            {**info.as_dict(), "load_s": round(loads[info.ref], 1)} for info in images.values()
        ],
        "load_all_s": round(sum(loads.values()), 1),
        "with_dockerd_s": round(time.monotonic() - start, 1),
    }


def warm_up_phase(cluster: Cluster, log: Recorder) -> dict[str, Any]:
    """stop_processes(), then up() again on the same state dir."""
    plane = cluster.control_plane
    t0 = time.monotonic()
    plane.stop_processes()
    stop_s = time.monotonic() - t0
    start = time.monotonic()
    plane.up(log=log)
    up_s = time.monotonic() - start
    refs = ctr_images(plane.config.containerd_socket)
    return {
        "stop_s": round(stop_s, 1),
        "api_ready_s": log.first_after(start, r"^API server ready"),
        "up_s": round(up_s, 2),
        "images_kept": [r for r in refs if r.startswith("localhost/trainingjob-")],
    }


def install_chart(cluster: Cluster, rows: int) -> float:
    """The chart as the node tier's ``release`` fixture installs it; seconds it took."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    start = time.monotonic()
    cluster.helm_run(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(VALUES),
        "--set", "syntheticDataset.enabled=true", "--set", f"syntheticDataset.rows={rows}",
        "--set", "operator.imagePullTimeoutSeconds=20", "--set", "operator.cancelGraceSeconds=60",
        "--wait", "--wait-for-jobs", "--timeout=6m",
        timeout=420,
    )  # fmt: skip
    return time.monotonic() - start


def shared_folder(cluster: Cluster) -> Path:
    """The host folder of the local PV bound to the chart's PVC (read, never written)."""
    claim = cluster.get_json("pvc", f"{FULLNAME}-shared", "-n", NAMESPACE)
    volume = cluster.get_json("pv", claim["spec"]["volumeName"])
    return Path(volume["spec"]["local"]["path"])


def bare_pod(name: str, template_spec: dict[str, Any]) -> dict[str, Any]:
    """The trainer's pod spec (same image, securityContext, volumes, resources) as a bare
    pod whose container sleeps 5 s instead of training."""
    spec = copy.deepcopy(template_spec)
    container = spec["containers"][0]
    container["command"] = ["python", "-c", "import time; time.sleep(5)"]
    container.pop("args", None)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def diagnose(cluster: Cluster) -> str:
    parts = [
        cluster.kubectl(
            "get", "pods,jobs,trainingjobs", "-n", NAMESPACE, "-o", "wide", check=False
        ),
        cluster.kubectl("logs", "-n", NAMESPACE, f"deploy/{FULLNAME}", "--tail=40", check=False),
    ]
    return "\n".join(p.stdout + p.stderr for p in parts)


def start_trainingjob(
    cluster: Cluster, name: str, seed: int, watchers: Watchers
) -> dict[str, float]:
    """Apply one TrainingJob (nTrials 1), wait for its end; seconds from apply to each step."""
    pods, jobs, statuses = watchers
    applied = time.time()
    client.CustomObjectsApi().create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, trainingjob(name, nTrials=1, seed=seed)
    )
    job = f"{name}-train"
    pod = wait_until(lambda: pods.pod_of_job(job), 120, f"the pod of {name}")
    wait_until(lambda: pod in pods.running and job in jobs.created, 120, f"{pod} running")
    wait_until(lambda: statuses.phase.get(name) in FINAL, 300, f"{name} to finish")
    # The phase turns final from the progress file, a moment before the pod ends: the next
    # pod (1 CPU requested, as this one) would wait for the scheduler on a 2-CPU node.
    wait_until(lambda: pods.phase.get(pod) in ("Succeeded", "Failed"), 120, f"{pod} to end")
    if statuses.phase[name] != "Succeeded":
        raise BenchError(f"{name} ended {statuses.phase[name]}:\n{diagnose(cluster)}")
    out = {
        "job": jobs.created[job] - applied,
        "pod": pods.created[pod] - applied,
        "running": pods.running[pod] - applied,
        "pod_to_running": pods.running[pod] - pods.created[pod],
    }
    if pod in pods.started_at:
        out["started_at"] = pods.started_at[pod] - applied
    return out


def start_bare_pod(name: str, template: dict[str, Any], pods: PodWatcher) -> dict[str, float]:
    """Create the bare pod, wait for its end, delete it; seconds from create to running."""
    core = client.CoreV1Api()
    created = time.time()
    core.create_namespaced_pod(NAMESPACE, cast(Any, bare_pod(name, template)))
    wait_until(lambda: name in pods.running, 120, f"{name} running")
    wait_until(lambda: pods.phase.get(name) in ("Succeeded", "Failed"), 120, f"{name} to end")
    core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
    out = {"running": pods.running[name] - created}
    if name in pods.started_at:
        out["started_at"] = pods.started_at[name] - created
    return out


def startup_phase(cluster: Cluster, applies: int, watchers: Watchers) -> dict[str, Any]:
    """N TrainingJobs one after another (each to its end), each followed by a bare pod of
    the same pod spec (interleaved, so both see the same load)."""
    runs: list[dict[str, float]] = []
    bares: list[dict[str, float]] = []
    template: dict[str, Any] | None = None
    for i in range(applies):
        time.sleep(1)
        runs.append(start_trainingjob(cluster, f"start-{i}", i, watchers))
        if template is None:
            job = cluster.get_json("job", f"start-{i}-train", "-n", NAMESPACE)
            template = job["spec"]["template"]["spec"]
        assert template is not None
        time.sleep(1)
        bares.append(start_bare_pod(f"bare-{i}", template, watchers[0]))
        print(
            f"  start-{i}: Job {runs[-1]['job']:.2f} s, running {runs[-1]['running']:.2f} s;"
            f" bare pod running {bares[-1]['running']:.2f} s (load {load()})",
            file=sys.stderr,
            flush=True,
        )

    def pick(rows: list[dict[str, float]], key: str) -> dict[str, Any]:
        return summary([row[key] for row in rows if key in row])

    return {
        "apply_to_job": pick(runs, "job"),
        "apply_to_pod": pick(runs, "pod"),
        "apply_to_running": pick(runs, "running"),
        "apply_to_started_at": pick(runs, "started_at"),
        "pod_created_to_running": pick(runs, "pod_to_running"),
        "bare_pod_to_running": pick(bares, "running"),
        "bare_pod_to_started_at": pick(bares, "started_at"),
    }


def trials_phase(
    cluster: Cluster, shared: Path, n_trials: int, statuses: StatusWatcher
) -> dict[str, Any]:
    """One run of 2 × n_trials trials: trial end → CR status; the API floor idle and busy."""
    api = client.CustomObjectsApi()
    floor_name = "floor"
    api.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, trainingjob(floor_name, nTrials=1, cancel=True)
    )
    wait_until(lambda: statuses.phase.get(floor_name) in FINAL, 60, "the floor object to end")
    time.sleep(1)
    idle = api_floor(floor_name, 20)
    name = "trials"
    api.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, trainingjob(name, nTrials=n_trials)
    )
    wait_until(lambda: (name, 1) in statuses.trial_seen, 300, f"the first trial of {name}")
    busy = api_floor(floor_name, 20)
    wait_until(lambda: statuses.phase.get(name) in FINAL, 1800, f"{name} to finish")
    time.sleep(1)
    if statuses.phase[name] != "Succeeded":
        raise BenchError(f"{name} ended {statuses.phase[name]}:\n{diagnose(cluster)}")
    run_dir = latest_run_dir(shared, NAMESPACE, name)
    progress = read_progress(run_dir) if run_dir else None
    if progress is None:
        raise BenchError(f"no progress file of {name} under {shared}")
    ends = {t.trial: epoch(t.finished_at) for t in progress.trials}
    lags = [
        statuses.trial_seen[(name, k)] - end
        for k, end in ends.items()
        if (name, k) in statuses.trial_seen
    ]
    span = max(ends.values()) - min(ends.values()) if ends else 0.0
    return {
        "trials": len(ends),
        "trials_span_s": round(span, 1),
        "trial_end_to_status": summary(lags),
        "api_floor_idle": summary(idle),
        "api_floor_during_run": summary(busy),
    }


# -- output ---------------------------------------------------------------------------------------
def line(label: str, figure: dict[str, Any], target: float | None = None) -> str:
    if not figure.get("n"):
        return f"  {label:50s} no samples"
    text = (
        f"  {label:50s} p50 {figure['p50_s'] * 1000:7.0f} ms  p95 {figure['p95_s'] * 1000:7.0f} ms"
        f"  (n={figure['n']})"
    )
    if target is not None:
        verdict = "PASS" if figure["p95_s"] < target else "MISS"
        text += f"  target p95 < {target:.0f} s: {verdict}"
    return text


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    return f"{a[key] / b[key]:.2f}x" if a.get("n") and b.get("n") and b[key] > 0 else "n/a"


def report(r: dict[str, Any]) -> None:
    print()
    print(f"Figures on the real node (tjctl dev-cluster up --node kubelet), {r['cpus']} CPUs")
    print("load average (1/5/15 min): " + ", ".join(f"{k} {v}" for k, v in r["load"].items()))
    im = r["images"]
    print("Images (warm build cache), private dockerd up in " + f"{im['engine_up_s'] or 0:.1f} s:")
    for info in im["images"]:
        print(
            f"  {info['ref']:40s} {info['size_bytes'] / 1e6:5.0f} MB"
            f"  build {info['seconds']:5.1f} s  load into containerd {info['load_s']:5.1f} s"
        )
    cold, warm = r["cold_up"], r["warm_up"]
    print("Start-up:")
    print(
        f"  cold up (fresh state dir) -> API ready {cold['api_ready_s'] or 0:5.1f} s,"
        f" -> up() returned (node Ready + controllers) {cold['up_s']:5.1f} s"
    )
    print(
        f"  + loading both images into its empty containerd {im['load_all_s']:5.1f} s"
        f"  = {cold['up_s'] + im['load_all_s']:5.1f} s to a node that can run our pods"
    )
    print(
        f"  warm up (same state dir after stop_processes, {warm['stop_s']:.1f} s) -> API ready"
        f" {warm['api_ready_s'] or 0:5.1f} s, -> up() returned {warm['up_s']:5.1f} s;"
        f" images kept: {len(warm['images_kept'])}/2"
    )
    print(f"  helm install --wait --wait-for-jobs (dataset hook Job) {r['helm_install_s']:5.1f} s")
    s = r["startup"]
    print(f"Pod start-up, {s['apply_to_running']['n']} TrainingJobs nTrials 1, one after another:")
    print(line("apply -> Job created", s["apply_to_job"]))
    print(line("apply -> trainer pod created", s["apply_to_pod"]))
    running = s["apply_to_running"]
    print(line("apply -> trainer container running (watch)", running, TARGET_RUNNING_P95))
    print(line("apply -> containerStatuses startedAt (1 s steps)", s["apply_to_started_at"]))
    print(line("trainer pod created -> running (node side)", s["pod_created_to_running"]))
    print(line("floor: bare pod, same spec -> running (watch)", s["bare_pod_to_running"]))
    print(
        "  operator + Job controller overhead: "
        f"p50 {ratio(s['apply_to_running'], s['bare_pod_to_running'], 'p50_s')},"
        f" p95 {ratio(s['apply_to_running'], s['bare_pod_to_running'], 'p95_s')} of the floor"
    )
    t = r["progress"]
    print(f"Progress, one run of {t['trials']} trials over {t['trials_span_s']:.0f} s:")
    print(line("trial end -> CR status (watch)", t["trial_end_to_status"], TARGET_STATUS_P95))
    print(line("API floor idle: status patch -> watch", t["api_floor_idle"]))
    print(line("API floor while the trainer runs", t["api_floor_during_run"]))
    print(
        "  trial end -> status / API floor while running: "
        f"p50 {ratio(t['trial_end_to_status'], t['api_floor_during_run'], 'p50_s')},"
        f" p95 {ratio(t['trial_end_to_status'], t['api_floor_during_run'], 'p95_s')}"
    )
    print(f"total bench time {r['total_s']:.0f} s")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def leftover_mounts(state: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == str(state) or p.startswith(f"{state}/")]


@contextlib.contextmanager
def scratch(keep: bool) -> Iterator[Path]:
    """A temp folder for the state dir; removed at the end unless kept or still mounted."""
    folder = Path(tempfile.mkdtemp(prefix="tj-node-bench-"))
    try:
        yield folder
    finally:
        if keep or leftover_mounts(folder):
            print(f"state dir kept: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    log = Recorder()
    began = time.monotonic()
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load": {"start": load()}}
    tools = ensure_tools(log=log)
    with scratch(args.keep) as tmp:
        start = time.monotonic()
        with running_cluster(tmp / "cluster", tools, log=log, node="kubelet") as cluster:
            result["cold_up"] = {
                "api_ready_s": log.first_after(start, r"^API server ready"),
                "up_s": round(time.monotonic() - start, 2),
            }
            result["images"] = images_phase(cluster, log)
            result["load"]["after images"] = load()
            result["warm_up"] = warm_up_phase(cluster, log)
            result["helm_install_s"] = round(install_chart(cluster, args.rows), 1)
            result["load"]["after install"] = load()
            config.load_kube_config(str(cluster.kubeconfig))
            shared = shared_folder(cluster)
            watchers = (PodWatcher(NAMESPACE), JobWatcher(NAMESPACE), StatusWatcher(NAMESPACE))
            for watcher in watchers:
                watcher.start()
            time.sleep(1)
            try:
                result["startup"] = startup_phase(cluster, args.applies, watchers)
                result["load"]["after start-ups"] = load()
                result["progress"] = trials_phase(cluster, shared, args.trials, watchers[2])
                result["load"]["end"] = load()
            finally:
                for watcher in watchers:
                    watcher.stop.set()
    result["total_s"] = round(time.monotonic() - began, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=10, help="TrainingJobs for start-up")
    parser.add_argument("--trials", type=int, default=20, help="trials per model (≥ 20)")
    parser.add_argument("--rows", type=int, default=20000, help="candles of the synthetic 15m set")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the state dir (logs)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the real node needs root (network namespace, mounts, cgroups)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = run(args)
    except KeyboardInterrupt:
        print("interrupted: the cluster was stopped", file=sys.stderr)
        return 130
    except (ToolsError, ControlPlaneError, PortInUseError, NetnsError, NodeError) as exc:
        print(f"the real node did not start: {exc}", file=sys.stderr)
        return 1
    except ImagesError as exc:
        print(f"the images could not be built or loaded: {exc}", file=sys.stderr)
        return 1
    except (BenchError, AssertionError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

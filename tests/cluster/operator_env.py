"""The operator under test: the real `tjctl operator` process against the test control
plane, with the pod harness running the real trainer on a small dataset."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tjcontract.layout import PROGRESS_FILE
from tjcore.store import JobStore
from tjtrainer.progress import latest_run_dir

ROOT = Path(__file__).resolve().parents[2]
TJCTL = str(Path(sys.executable).with_name("tjctl"))
CLAIM = "trainingjob-shared"


class OperatorProcess:
    """Starts, kills and restarts `tjctl operator` as a user would run it."""

    def __init__(self, *, env: dict[str, str], log_path: Path, args: list[str]) -> None:
        self.env, self.log_path, self.args = env, log_path, args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [TJCTL, "operator", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted operator pod."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class OperatorEnv:
    """Helpers the operator tests share: apply, read, wait."""

    def __init__(
        self, cluster: Any, shared: Path, operator: OperatorProcess, store: JobStore
    ) -> None:
        self.cluster, self.shared, self.operator, self.store = cluster, shared, operator, store

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> Any:
        return self.cluster.kubectl(*args, check=check, input=input)

    def apply(self, namespace: str, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": "mltraining.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl(
            "get", "trainingjob", name, "-n", namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        body = self.get(namespace, name) or {}
        return dict(body.get("status") or {})

    def run_dir(self, namespace: str, name: str) -> Path | None:
        """The newest run folder of TrainingJob ``namespace/name`` (``<name>-<uid>``)."""
        return latest_run_dir(self.shared, namespace, name)

    def progress(self, namespace: str, name: str) -> dict[str, Any]:
        """Its ``progress.json`` as JSON; empty before the trainer wrote one."""
        run_dir = self.run_dir(namespace, name)
        path = run_dir / PROGRESS_FILE if run_dir else None
        return dict(json.loads(path.read_text())) if path and path.exists() else {}

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}\n"
            f"operator log:\n{self.operator.log_tail()}"
        )

    def wait_phase(
        self, namespace: str, name: str, *phases: str, timeout: float = 180
    ) -> dict[str, Any]:
        return self.wait_for(
            f"{namespace}/{name} to reach {phases}",
            lambda: (lambda s: s if s.get("phase") in phases else None)(
                self.status(namespace, name)
            ),
            timeout,
        )

    def wait_trials(
        self, namespace: str, name: str, at_least: int, timeout: float = 120
    ) -> dict[str, Any]:
        return self.wait_for(
            f"{namespace}/{name} to finish {at_least} trials",
            lambda: (lambda s: s if (s.get("currentTrial") or 0) >= at_least else None)(
                self.status(namespace, name)
            ),
            timeout,
        )

    def jobs_of(self, namespace: str, name: str) -> list[dict[str, Any]]:
        result = self.kubectl(
            "get", "jobs", "-n", namespace, "-l", f"mltraining.dev/trainingjob={name}", "-o", "json"
        )
        return list(json.loads(result.stdout)["items"])

    def pods_of(self, namespace: str, name: str) -> list[dict[str, Any]]:
        result = self.kubectl(
            "get", "pods", "-n", namespace, "-l", f"mltraining.dev/trainingjob={name}", "-o", "json"
        )
        return list(json.loads(result.stdout)["items"])


def make_dataset(shared: Path, timeframe: str, rows: int) -> None:
    env = {**os.environ, "SHARED_DATA_PATH": str(shared)}
    subprocess.run(
        [TJCTL, "dataset", "synth", "--timeframe", timeframe, "--rows", str(rows), "--seed", "5"],
        env=env,
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def running_operator(
    cluster: Any,
    log_dir: Path,
    *,
    claim: str = CLAIM,
    database: str = "training_jobs.db",
    dataset_rows: int | None = 3000,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--no-bridge",),
    namespaces: tuple[str, ...] = (),
) -> Iterator[OperatorEnv]:
    """The real `tjctl operator` on the claim ``claim``'s folder (a 15m dataset of
    ``dataset_rows`` made there first), the CRD installed and ``namespaces`` created;
    stopped on exit. ``env`` adds to (or overrides) the operator's environment."""
    shared = cluster.pvc_dir(claim)
    shared.mkdir(parents=True, exist_ok=True)
    if dataset_rows is not None:
        make_dataset(shared, "15m", dataset_rows)
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "crd.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.mltraining.dev"
    )
    for namespace in namespaces:
        cluster.kubectl("create", "namespace", namespace, check=False)
    database_url = f"sqlite:///{shared / database}"
    process_env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "SHARED_DATA_PATH": str(shared),
        "DATABASE_URL": database_url,
        **({} if claim == CLAIM else {"TJ_SHARED_PVC": claim}),
        **(env or {}),
    }
    operator = OperatorProcess(env=process_env, log_path=log_dir / "operator.log", args=list(args))
    operator.start()
    operator_env = OperatorEnv(cluster, shared, operator, JobStore(database_url))
    try:
        yield operator_env
    finally:
        operator.stop()
        operator_env.store.close()

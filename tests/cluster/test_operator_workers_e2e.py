"""spec.workers: 3 with the real operator, the real Job controller (an Indexed Job), the
pod harness running three real trainer processes and a real PostgreSQL server holding
both the table and the shared studies; and the refusal without PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tests.cluster.operator_env import running_operator
from tjtrainer.progress import MODELS, latest_run_dir, read_progress
from tjtrainer.shared_studies import study_prefix
from tjtrainer.versions import VERSION_NAME

SECRET, KEY = "tj-database", "database-url"
SPEC = {"timeframe": "15m", "nTrials": 4, "trainRatio": 0.8, "seed": 3, "parallelism": 1}


class Watch:
    """``kubectl get trainingjobs -w`` as a user runs it, its lines collected."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.process = subprocess.Popen(
            [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig}", "get",
             "trainingjobs", "-n", namespace, "-w", "--no-headers", "-o",
             "custom-columns=PHASE:.status.phase,TRIAL:.status.trial"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def stop(self) -> list[str]:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        return self.lines


def test_three_workers_share_one_study_and_the_status_shows_every_trial(
    cluster: Any, namespace: str, postgres_url: str, tmp_path: Path
) -> None:
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        SECRET,
        "-n",
        namespace,
        f"--from-literal={KEY}={postgres_url}",
    )
    env = {
        "DATABASE_URL": postgres_url,
        "TJ_DATABASE_SECRET_NAME": SECRET,
        "TJ_DATABASE_SECRET_KEY": KEY,
    }
    with running_operator(cluster, tmp_path, env=env) as op:
        watch = Watch(cluster, namespace)
        try:
            op.apply(namespace, "wide", workers=3, **SPEC)
            seen: list[int] = []

            def finished() -> dict[str, Any] | None:
                status = op.status(namespace, "wide")
                if status.get("currentTrial") is not None:
                    seen.append(status["currentTrial"])
                return status if status.get("phase") in ("Succeeded", "Failed") else None

            status = op.wait_for("the run to end", finished, timeout=420)
        finally:
            lines = watch.stop()
        assert status["phase"] == "Succeeded", (status, op.operator.log_tail())
        [job] = op.jobs_of(namespace, "wide")
        spec = job["spec"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
            "Indexed",
            3,
            3,
        )
        container = spec["template"]["spec"]["containers"][0]
        [storage] = [v for v in container["env"] if v["name"] == "TJ_STUDY_STORAGE_URL"]
        assert storage["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": KEY}}
        pods = op.wait_for(
            "every worker pod to succeed (worker 0 exits after publishing)",
            lambda: (
                lambda pods: (
                    pods if all(p["status"]["phase"] == "Succeeded" for p in pods) else None
                )
            )(op.pods_of(namespace, "wide")),
            timeout=60,
        )
        indexes = sorted(
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
        )
        assert indexes == ["0", "1", "2"], indexes
        # Every trial of every worker reached the status, in order; kubectl -w showed them.
        assert seen == sorted(seen) and seen[-1] == 8, seen
        assert "Succeeded   8/8" in lines or any(
            line.split() == ["Succeeded", "8/8"] for line in lines
        ), lines
        run_dir = latest_run_dir(op.shared, namespace, "wide")
        assert run_dir is not None
        storage_ = optuna.storages.RDBStorage(postgres_url)
        try:
            for model in MODELS:
                trials = optuna.load_study(
                    study_name=f"{study_prefix(run_dir)}:{model}", storage=storage_
                ).get_trials(deepcopy=False)
                done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
                assert len(done) == SPEC["nTrials"], (model, trials)
        finally:
            storage_.engine.dispose()
        progress = read_progress(run_dir)
        assert progress is not None and progress.model_version == status["modelVersion"]
        versions = [
            p.name for p in (op.shared / "models").iterdir() if VERSION_NAME.fullmatch(p.name)
        ]
        assert status["modelVersion"] in versions
        # The URL never reached the CR, its Events or the Job in plain text.
        password = postgres_url.split(":")[2].split("@")[0]
        events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        body = json.dumps(op.get(namespace, "wide"))
        assert password not in events + body + json.dumps(job)


def test_workers_without_postgresql_fail_with_a_message_saying_how_to_configure_it(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    with running_operator(cluster, tmp_path, dataset_rows=None) as op:
        op.apply(namespace, "narrow", workers=2, **SPEC)
        status = op.wait_phase(namespace, "narrow", "Failed", "Succeeded", timeout=60)
        assert status["phase"] == "Failed", status
        assert {c["type"]: c for c in status["conditions"]}["Failed"]["reason"] == "InvalidSpec"
        assert "PostgreSQL" in status["message"] and "database.existingSecret" in status["message"]
        assert op.jobs_of(namespace, "narrow") == []

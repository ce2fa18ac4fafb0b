"""Issue 13 items 5, 6 and 8 with the real operator and trainer on the real control plane:
a second TrainingJob with ``warmStart: latest`` starts from the first one's best trials,
the trainer's promotions move the champion (``tjctl models`` lists it, with the run that
set it, and rolls it back), and ``tjctl dashboard`` serves the run's study read-only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.cluster.operator_env import OperatorEnv, running_operator
from tjcontract.layout import STUDY_FILE
from tjtrainer.studies import open_run_storage

TJCTL = str(Path(sys.executable).with_name("tjctl"))
SPEC = {"timeframe": "15m", "nTrials": 6, "trainRatio": 0.8, "seed": 4, "parallelism": 1}


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(cluster, tmp_path_factory.mktemp("models")) as env:
        yield env


def _tjctl_env(env: OperatorEnv) -> dict[str, str]:
    return {
        **os.environ,
        "SHARED_DATA_PATH": str(env.shared),
        "DATABASE_URL": f"sqlite:///{env.shared / 'training_jobs.db'}",
    }


def _tjctl(env: OperatorEnv, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [TJCTL, *args], env=_tjctl_env(env), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def _champion(env: OperatorEnv) -> dict[str, Any]:
    aliases = json.loads(_tjctl(env, "models", "list", "-o", "json").stdout)["aliases"]
    (found,) = [
        a
        for a in aliases
        if (a["timeframe"], a["model"], a["alias"]) == ("15m", "LONG", "champion")
    ]
    return dict(found)


def _params_by_slot(run_dir: Path, model: str) -> list[dict[str, Any]]:
    study = optuna.load_study(study_name=model, storage=open_run_storage(run_dir))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    trials = sorted(finished, key=lambda t: t.user_attrs["slot"])  # a killed trial is redone
    return [dict(t.params) for t in trials]


def stop(server: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    """Stop the dashboard with ``signum``; killed (and the test failed) if it stays."""
    server.send_signal(signum)
    try:
        return server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        _, err = server.communicate()
        pytest.fail(f"tjctl dashboard did not stop on signal {signum}: {err[-2000:]}")


def test_warm_start_aliases_and_dashboard_with_the_real_operator(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "first", **SPEC)
    first = env.wait_phase(namespace, "first", "Succeeded", "Failed", timeout=300)
    assert first["phase"] == "Succeeded", first
    # Another seed: a cold start would sample other parameters than the first run's.
    env.apply(namespace, "second", **{**SPEC, "seed": 5}, warmStart="latest")
    second = env.wait_phase(namespace, "second", "Succeeded", "Failed", timeout=300)
    assert second["phase"] == "Succeeded", second
    v1, v2 = first["modelVersion"], second["modelVersion"]
    models = env.shared / "models"

    # Item 5: the second search began with the first version's best trials.
    top = json.loads((models / v1 / "metadata.json").read_text())["models"]["LONG"]["top_params"]
    second_dir = env.run_dir(namespace, "second")
    assert second_dir is not None
    study_file = second_dir / STUDY_FILE
    assert _params_by_slot(second_dir, "LONG")[: len(top)] == top

    # Item 6: the trainer's promotion made v2 the champion, set by its operator row.
    champion = _champion(env)
    assert champion["version"] == v2 and f"{namespace}/second" in champion["set_by"]
    _tjctl(env, "models", "rollback", "--timeframe", "15m")
    assert os.readlink(models / "latest_15m") == v1
    assert _champion(env)["version"] == v1

    # Item 8: the dashboard serves the finished run's study, and leaves it as it was.
    before = hashlib.sha256(study_file.read_bytes()).hexdigest()
    server = subprocess.Popen(
        [TJCTL, "dashboard", "second", "-n", namespace, "--port", "0"],
        env=_tjctl_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline())
        assert found, server.stderr
        with urllib.request.urlopen(f"{found.group(0)}api/studies", timeout=30) as answer:
            summaries = json.loads(answer.read())["study_summaries"]
        assert sorted(s["study_name"] for s in summaries) == ["LONG", "SHORT"]
    finally:
        _, err = stop(server, signal.SIGTERM)
    assert server.returncode == 0, err
    assert hashlib.sha256(study_file.read_bytes()).hexdigest() == before

"""spec.warmStart: the first trials of a warm-started search are the best trials of the
version it names (or of the champion, for ``latest``); a version of another search space
is refused with one error line before any trial. Small real runs on a synthetic dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from trainer_testlib import make_config

from tjtrainer.studies import open_run_storage
from tjtrainer.train import run_training
from tjtrainer.warmstart import WARM_TRIALS

N = 6  # trials per model: enough for WARM_TRIALS warm ones and one of TPE's own


def _first_params(run_dir: Path, model: str) -> list[dict[str, Any]]:
    """The parameters of a run's trials of ``model`` in slot order, from its study."""
    study = optuna.load_study(study_name=model, storage=open_run_storage(run_dir))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    trials = sorted(finished, key=lambda t: t.user_attrs["slot"])  # a killed trial is redone
    return [dict(t.params) for t in trials]


def _metadata(data_root: Path, version: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (data_root / "models" / version / "metadata.json").read_text()
    )
    return found


def test_a_warm_started_runs_first_trials_are_the_previous_best(data_root: Path) -> None:
    first = run_training(make_config(data_root, "first", n_trials=N))
    version = str(first.model_version)
    best = {m: _metadata(data_root, version)["models"][m]["top_params"] for m in ("LONG", "SHORT")}
    assert len(best["LONG"]) == WARM_TRIALS
    cold = _first_params(data_root / "runs" / "default" / "first", "LONG")

    warm = make_config(data_root, "warm", n_trials=N, warm_start=version)
    run = run_training(warm)

    assert run.state == "completed"
    for model in ("LONG", "SHORT"):
        params = _first_params(warm.run_dir, model)
        assert params[:WARM_TRIALS] == best[model], model
        assert len(params) >= N  # the search went on after them
    assert _first_params(warm.run_dir, "LONG")[:WARM_TRIALS] != cold[:WARM_TRIALS]


def test_latest_starts_from_the_champion_and_nothing_published_starts_cold(
    data_root: Path,
) -> None:
    cold = make_config(data_root, "cold", n_trials=3, warm_start="latest")
    assert run_training(cold).state == "completed"  # nothing published yet: a cold start
    champion = str(run_training(make_config(data_root, "champ", n_trials=N)).model_version)

    warm = make_config(data_root, "from-latest", n_trials=3, warm_start="latest")
    run_training(warm)

    top = _metadata(data_root, champion)["models"]["SHORT"]["top_params"]
    assert _first_params(warm.run_dir, "SHORT") == top[:3]  # at most nTrials of them


def test_a_version_of_another_search_space_is_refused_with_one_line(data_root: Path) -> None:
    version = str(run_training(make_config(data_root, "base", n_trials=2)).model_version)
    metadata = _metadata(data_root, version)
    metadata["search"]["space"]["max_depth"] = "IntDistribution(high=12, log=False, low=3, step=1)"
    (data_root / "models" / version / "metadata.json").write_text(json.dumps(metadata))
    run_dir = data_root / "runs" / "default" / "refused"

    done = subprocess.run(
        [sys.executable, "-m", "tjtrainer", "train", "--timeframe", "15m", "--n-trials", "2",
         "--run-dir", str(run_dir), "--data-root", str(data_root), "--warm-start", version],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in done.stderr
    assert errors == [
        f"error: warmStart {version}: its search space differs from this trainer's "
        "(max_depth); its trials cannot start this search: use warmStart: none, or a version "
        "of the same search space"
    ]
    assert "trial " not in done.stdout

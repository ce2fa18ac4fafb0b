"""`tjctl run` of a manifest with spec.warmStart: latest starts its search with the best
trials of the champion that an earlier `tjctl run` published (real runs, tjctl as a
subprocess, the study read from the run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from local_runs_lib import manifest, shared_folder, store_of, tjctl
from optuna.trial import TrialState

from tjtrainer.progress import latest_run_dir
from tjtrainer.studies import open_run_storage


def _params_by_slot(shared: Path, name: str, model: str) -> list[dict[str, object]]:
    run_dir = latest_run_dir(shared, "default", name)
    assert run_dir is not None, f"no run folder of {name}"
    study = optuna.load_study(study_name=model, storage=open_run_storage(run_dir))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    trials = sorted(finished, key=lambda t: t.user_attrs["slot"])  # a killed trial is redone
    return [dict(t.params) for t in trials]


def test_tjctl_run_warm_starts_from_the_champion(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    shared = shared_folder(tmp_path_factory)
    first = tjctl(shared, "run", "-f", str(manifest(tmp_path, "first", nTrials=6)), "--no-progress")
    assert first.returncode == 0, first.stderr
    version = store_of(shared).get_by_name("default", "first").model_version  # type: ignore[union-attr]
    metadata = json.loads((shared / "models" / str(version) / "metadata.json").read_text())

    warm = manifest(tmp_path, "second", nTrials=6, warmStart="latest")
    second = tjctl(shared, "run", "-f", str(warm), "--no-progress")

    assert second.returncode == 0, second.stderr
    for model in ("LONG", "SHORT"):
        top = metadata["models"][model]["top_params"]
        assert _params_by_slot(shared, "second", model)[: len(top)] == top

"""Model aliases: champion and challenger per timeframe and model, switched atomically on
disk by `tjctl models promote | rollback`, recorded in the table with who and when, and
``*_latest`` / ``load_latest`` following the champions. Real version folders (saved by
the trainer's own code or by `tjctl run`), a real SQLite table, tjctl as a subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from local_runs_lib import manifest, shared_folder, store_of, tjctl
from model_versions_lib import latest_set, save_version

from tjtrainer.models import load_latest


def models_json(shared: Path) -> dict[str, Any]:
    done = tjctl(shared, "models", "list", "-o", "json")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def alias(document: dict[str, Any], name: str, model: str = "LONG") -> dict[str, Any]:
    (found,) = [
        a
        for a in document["aliases"]
        if (a["timeframe"], a["model"], a["alias"]) == ("15m", model, name)
    ]
    return found


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


def test_a_promoted_version_is_champion_and_one_not_promoted_the_challenger(
    shared: Path,
) -> None:
    first = save_version(shared, 1)
    second = save_version(shared, 2, promote=False)
    document = models_json(shared)
    for model in ("LONG", "SHORT"):
        assert alias(document, "champion", model)["version"] == first
        assert alias(document, "challenger", model)["version"] == second
    assert alias(document, "champion")["test_spearman"] == pytest.approx(0.01)
    assert [v["version"] for v in document["versions"]] == [second, first]
    assert os.readlink(shared / "models" / "challenger_15m_short") == second
    assert latest_set(shared / "models") == first


def test_promote_switches_the_champion_latest_follows_and_the_table_says_who_and_when(
    shared: Path,
) -> None:
    first = save_version(shared, 1)
    second = save_version(shared, 2, promote=False)

    done = tjctl(shared, "models", "promote", second)

    assert done.returncode == 0, done.stderr
    assert f"champion LONG: {first} -> {second}" in done.stdout
    models = shared / "models"
    assert os.readlink(models / "latest_15m") == second
    assert latest_set(models) == second
    assert load_latest(models, "15m", "long").version == second
    assert load_latest(models, "15m", "short").version == second
    document = models_json(shared)
    champion, challenger = alias(document, "champion"), alias(document, "challenger")
    assert champion["version"] == second and challenger["version"] == first  # the one replaced
    assert champion["set_by"].endswith("(tjctl)") and "@" in champion["set_by"]
    assert champion["set_at"].endswith("Z")
    recorded = {(r["model"], r["alias"], r["version"], r["previous_version"], r["action"])
                for r in document["history"]}  # fmt: skip
    assert recorded == {
        ("LONG", "champion", second, first, "promote"),
        ("SHORT", "champion", second, first, "promote"),
        ("LONG", "challenger", first, second, "promote"),
        ("SHORT", "challenger", first, second, "promote"),
    }


def test_one_model_alone_gets_a_mix_that_latest_holds_whole(shared: Path) -> None:
    first = save_version(shared, 1)
    second = save_version(shared, 2, promote=False)

    done = tjctl(shared, "models", "promote", second, "--model", "long")

    assert done.returncode == 0, done.stderr
    models = shared / "models"
    assert load_latest(models, "15m", "long").version == second
    assert load_latest(models, "15m", "short").version == first
    assert latest_set(models) == f"mix_{second}_{first}"
    long_bytes = (models / "model_long_15m_latest.ubj").read_bytes()
    assert long_bytes == (models / second / "model_long.ubj").read_bytes()
    short_bytes = (models / "model_short_15m_latest.ubj").read_bytes()
    assert short_bytes == (models / first / "model_short.ubj").read_bytes()
    document = models_json(shared)
    assert alias(document, "champion", "SHORT")["version"] == first
    assert alias(document, "challenger", "LONG")["version"] == first
    assert alias(document, "challenger", "SHORT")["version"] == second  # untouched


def test_models_scaled_differently_are_not_split_and_nothing_changes(shared: Path) -> None:
    first = save_version(shared, 1)
    other = save_version(shared, 2, promote=False, scaler_rows=6)  # another dataset's scaling
    models = shared / "models"
    before = {p.name: os.readlink(p) for p in models.iterdir() if p.is_symlink()}

    done = tjctl(shared, "models", "promote", other, "--model", "short")

    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "scale their features differently" in line
    assert {p.name: os.readlink(p) for p in models.iterdir() if p.is_symlink()} == before
    assert latest_set(models) == first


def test_unknown_versions_and_nothing_to_roll_back_are_one_error_line(shared: Path) -> None:
    save_version(shared, 1)
    for args, words in [
        (("promote", "15m_20000101_000000"), "is not a complete model version"),
        (("promote", "../etc"), "a model version must be"),
        (("rollback", "--timeframe", "15m"), "nothing to roll back to"),
        (("rollback", "--timeframe", "1h"), "nothing to roll back to"),
    ]:
        done = tjctl(shared, "models", *args)
        assert done.returncode == 1, (args, done.stdout)
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and words in line, (args, line)


def test_rollback_undoes_the_trainers_promotion_and_then_its_own(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    shared = shared_folder(tmp_path_factory)
    for name in ("first", "second"):  # promotion always: each becomes the champion
        done = tjctl(shared, "run", "-f", str(manifest(tmp_path, name)), "--no-progress")
        assert done.returncode == 0, done.stderr
    rows = {r.name: r for r in store_of(shared).list_jobs()}
    first, second = str(rows["first"].model_version), str(rows["second"].model_version)
    assert alias(models_json(shared), "champion")["set_by"] == (
        f"tjctl-run default/second (job {rows['second'].id})"
    )

    done = tjctl(shared, "models", "rollback", "--timeframe", "15m")

    assert done.returncode == 0, done.stderr
    models = shared / "models"
    assert load_latest(models, "15m", "long").version == first
    assert latest_set(models) == first
    document = models_json(shared)
    assert alias(document, "champion")["version"] == first
    assert alias(document, "challenger")["version"] == second
    assert document["history"][0]["action"] == "rollback"
    again = tjctl(shared, "models", "rollback", "--timeframe", "15m")  # undoes the rollback
    assert again.returncode == 0, again.stderr
    assert latest_set(models) == second


def test_switches_are_recorded_on_either_backend(database_url: str, shared_dir: Path) -> None:
    from tjcore.aliases import promote, rollback, states
    from tjcore.store import JobStore

    first = save_version(shared_dir, 1)
    second = save_version(shared_dir, 2, promote=False)
    store, models = JobStore(database_url), shared_dir / "models"
    try:
        promote(store, models, second, by="alice@host (test)")
        champion = {(s.model, s.alias): s for s in states(store, models, ("15m",))}
        assert champion[("SHORT", "champion")].version == second
        assert champion[("SHORT", "champion")].set_by == "alice@host (test)"
        rollback(store, models, "15m", by="bob@host (test)")
        after = {(s.model, s.alias): s for s in states(store, models, ("15m",))}
        assert after[("LONG", "champion")].version == first
        assert after[("LONG", "champion")].set_by == "bob@host (test)"
        assert after[("LONG", "challenger")].version == second
    finally:
        store.close()

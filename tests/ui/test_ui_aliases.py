"""The UI shows each model's champion and challenger and switches them through the table
and the models folder, as `tjctl models` does."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from conftest import APP_PATH, add_job
from streamlit.testing.v1 import AppTest

from tests.core.model_versions_lib import latest_set, save_version
from tjcore.store import JobStore
from tjtrainer.models import load_latest


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=30).run()


def _aliases(at: AppTest, column: str = "version") -> dict[tuple[str, str, str], str | None]:
    (table,) = [d for d in at.dataframe if "alias" in d.value.columns]
    return {(r["timeframe"], r["model"], r["alias"]): r[column] for _, r in table.value.iterrows()}


def test_the_aliases_are_shown_with_who_set_them(store: JobStore, shared_dir: Path) -> None:
    first = save_version(shared_dir, 1)
    second = save_version(shared_dir, 2, promote=False)
    job = add_job(store, status="completed", model_version=first, namespace="ml", name="train-a")

    at = _app()

    assert not at.exception
    assert _aliases(at, "set by")[("15m", "LONG", "champion")] == f"test ml/train-a (job {job})"
    shown = _aliases(at)
    assert shown[("15m", "LONG", "champion")] == first
    assert shown[("15m", "SHORT", "challenger")] == second
    assert pd.isna(shown[("1h", "LONG", "champion")])


def test_make_champion_and_roll_back_switch_the_aliases(store: JobStore, shared_dir: Path) -> None:
    first = save_version(shared_dir, 1)
    second = save_version(shared_dir, 2, promote=False)
    models = shared_dir / "models"
    at = _app()

    at.selectbox(key="alias_version").select(second)
    at.button(key="alias_promote").click().run()

    assert not at.exception and not at.error
    assert f"champion LONG: {first} → {second}" in [s.value for s in at.success]
    assert _aliases(at)[("15m", "LONG", "champion")] == second
    assert os.readlink(models / "latest_15m") == second and latest_set(models) == second
    assert load_latest(models, "15m", "short").version == second
    with store.engine.connect() as conn:
        from sqlalchemy import text

        by = conn.execute(text("SELECT DISTINCT changed_by FROM model_aliases")).scalars().all()
    assert len(by) == 1 and by[0].endswith("(ui)")

    at.button(key="alias_rollback").click().run()

    assert not at.error
    assert _aliases(at)[("15m", "SHORT", "champion")] == first
    assert latest_set(models) == first


def test_a_refused_switch_is_a_sentence(store: JobStore, shared_dir: Path) -> None:
    save_version(shared_dir, 1)
    at = _app()
    at.selectbox(key="alias_timeframe").select("1h")
    at.button(key="alias_rollback").click().run()
    assert not at.exception
    (error,) = at.error
    assert "Could not roll back the 1h champion" in error.value
    assert "nothing to roll back to" in error.value and "DATABASE_URL" not in error.value

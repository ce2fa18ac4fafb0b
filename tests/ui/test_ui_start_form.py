"""The "Start Training" form inserts the pending row the seed's button inserts, with
the CRD's limits."""

from __future__ import annotations

import pytest
from conftest import APP_PATH
from streamlit.testing.v1 import AppTest

from tjcontract.spec import FIELDS_BY_NAME
from tjcore.spec import SpecError
from tjcore.store import JobStore
from tjui.forms import LABELS, spec_from_form


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=30)


def test_starting_a_job_inserts_a_pending_row_and_shows_it(store: JobStore) -> None:
    at = _app().run()
    at.sidebar.radio[0].set_value("1h")
    trials, ratio, seed, parallelism, folds, embargo = at.sidebar.number_input
    assert (folds.value, embargo.value) == (3, 16)  # the spec's defaults
    trials.set_value(12)
    ratio.set_value(0.7)
    seed.set_value(7)
    parallelism.set_value(2)
    at.sidebar.button[0].click().run()

    assert not at.exception
    (row,) = store.list_jobs()
    assert (row.status, row.timeframe, row.n_trials, row.train_ratio) == ("pending", "1h", 12, 0.7)
    assert (row.total_trials, row.seed, row.parallelism, row.source) == (24, 7, 2, "ui")
    assert f"Job {row.id} queued" in at.sidebar.success[0].value
    assert at.selectbox(key="job_id").value == row.id
    assert any("badge[pending]" in m.value for m in at.markdown)
    assert any(f"Job {row.id} · 1h · 12 trials per model" in s.value for s in at.subheader)


def test_no_row_is_inserted_before_the_button_is_pressed(store: JobStore) -> None:
    at = _app().run()
    at.sidebar.number_input[0].set_value(12)
    at.run()
    assert store.list_jobs() == []


@pytest.mark.parametrize(
    ("label", "field"),
    [
        ("Trials per model", "nTrials"),
        ("Train ratio", "trainRatio"),
        ("Seed", "seed"),
        ("Parallel trials", "parallelism"),
    ],
)
def test_the_inputs_carry_the_crd_limits(store: JobStore, label: str, field: str) -> None:
    # The browser refuses a value outside these limits with a message and does not
    # submit the form (see test_ui_in_browser), so they must be the CRD's exactly.
    at = _app().run()
    (widget,) = [w for w in at.sidebar.number_input if w.label == label]
    spec_field = FIELDS_BY_NAME[field]
    assert (widget.proto.min, widget.proto.max) == (spec_field.minimum, spec_field.maximum)
    assert widget.value == spec_field.default
    assert list(at.sidebar.radio[0].options) == list(FIELDS_BY_NAME["timeframe"].enum or ())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"nTrials": 0}, "Trials per model: must be an integer from 1 to 10000, got 0"),
        ({"nTrials": 10001}, "Trials per model: must be an integer from 1 to 10000"),
        ({"trainRatio": 0.99}, "Train ratio: must be a number from 0.5 to 0.95, got 0.99"),
        ({"timeframe": "4h"}, "Timeframe: must be one of '15m', '1h', got '4h'"),
        ({"parallelism": 17}, "Parallel trials: must be an integer from 1 to 16"),
    ],
)
def test_invalid_values_are_refused_naming_the_form_field(
    values: dict[str, object], expected: str
) -> None:
    good = {"timeframe": "15m", "nTrials": 30, "trainRatio": 0.8, "seed": 42, "parallelism": 1}
    with pytest.raises(SpecError) as refused:
        spec_from_form(good | values)
    assert expected in str(refused.value)
    assert "spec." not in str(refused.value)


def test_every_spec_field_of_the_form_has_a_label() -> None:
    assert set(LABELS) <= set(FIELDS_BY_NAME)
    assert spec_from_form({"timeframe": "1h", "nTrials": 3, "trainRatio": 0.5}).nTrials == 3

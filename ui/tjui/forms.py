"""The "Start Training" form: the original design's timeframe, trials and train ratio
(plus the random seed, parallelism, the walk-forward folds, the embargo and the promotion
policy), validated exactly as the TrainingJob CRD validates a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from tjcontract.spec import FIELDS_BY_NAME
from tjcore.spec import SpecError, TrainingJobSpec, validate_spec
from tjui.db import DataError, submit_job

# The form's label of each spec field, so messages name what the user sees.
LABELS = {
    "timeframe": "Timeframe",
    "nTrials": "Trials per model",
    "trainRatio": "Train ratio",
    "seed": "Seed",
    "parallelism": "Parallel trials",
    "cvFolds": "Walk-forward folds",
    "embargo": "Embargo (rows)",
    "promotion": "Promotion",
}
FORM_KEY = "start_form"


def spec_from_form(values: Mapping[str, Any]) -> TrainingJobSpec:
    """Validate the form's values with the CRD's rules.

    Raises:
        SpecError: naming each wrong field by its label and the allowed values.
    """
    try:
        return validate_spec(dict(values))
    except SpecError as err:
        raise SpecError(err.describe("Cannot start this job", LABELS)) from None


def _limits(name: str, kind: type) -> dict[str, Any]:
    """min_value, max_value and value of a number input, from the spec's field table."""
    spec_field = FIELDS_BY_NAME[name]
    limits = {"value": kind(spec_field.default)}
    if spec_field.minimum is not None:
        limits["min_value"] = kind(spec_field.minimum)
    if spec_field.maximum is not None:
        limits["max_value"] = kind(spec_field.maximum)
    return limits


def _help(name: str) -> str:
    spec_field = FIELDS_BY_NAME[name]
    return f"{spec_field.description} Allowed: {spec_field.allowed()}."


def render_start_form(database_url: str) -> int | None:
    """Draw the form; on "Start Training" insert a pending row. Returns the new job's id,
    or ``None`` when nothing was started (the reason is shown)."""
    timeframes = FIELDS_BY_NAME["timeframe"].enum or ()
    with st.form(FORM_KEY, border=False):
        st.subheader("Start training")
        timeframe = st.radio(
            LABELS["timeframe"], timeframes, horizontal=True, help=_help("timeframe")
        )
        n_trials = st.number_input(
            LABELS["nTrials"], step=1, help=_help("nTrials"), **_limits("nTrials", int)
        )
        train_ratio = st.number_input(
            LABELS["trainRatio"],
            step=0.05,
            format="%.2f",
            help=_help("trainRatio"),
            **_limits("trainRatio", float),
        )
        with st.expander("Advanced"):
            seed = st.number_input(
                LABELS["seed"], step=1, help=_help("seed"), **_limits("seed", int)
            )
            parallelism = st.number_input(
                LABELS["parallelism"],
                step=1,
                help=_help("parallelism"),
                **_limits("parallelism", int),
            )
            cv_folds = st.number_input(
                LABELS["cvFolds"], step=1, help=_help("cvFolds"), **_limits("cvFolds", int)
            )
            embargo = st.number_input(
                LABELS["embargo"], step=1, help=_help("embargo"), **_limits("embargo", int)
            )
            promotion = st.selectbox(
                LABELS["promotion"],
                FIELDS_BY_NAME["promotion"].enum or ("always",),
                help=_help("promotion"),
            )
        submitted = st.form_submit_button("Start Training", type="primary", width="stretch")
    if not submitted:
        return None
    try:
        spec = spec_from_form(
            {
                "timeframe": timeframe,
                "nTrials": n_trials,
                "trainRatio": train_ratio,
                "seed": seed,
                "parallelism": parallelism,
                "cvFolds": cv_folds,
                "embargo": embargo,
                "promotion": promotion,
            }
        )
    except SpecError as err:
        st.error(str(err))
        return None
    try:
        job_id = submit_job(database_url, spec)
    except DataError as err:
        st.error(str(err))
        return None
    st.success(
        f"Job {job_id} queued: {spec.timeframe}, {spec.nTrials} trials per model "
        f"({spec.total_trials} in all). The operator or `tjctl worker` picks it up."
    )
    return job_id

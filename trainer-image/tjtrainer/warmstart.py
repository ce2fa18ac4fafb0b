"""Warm start (``spec.warmStart``): the first trials of a new search are the best trials of
an earlier model version, so the search starts where that one ended.

``none`` (the default) starts cold. ``latest`` takes each model's champion (what
``*_latest`` serves; nothing published yet: a cold start, logged); a version name takes
that version. Its ``metadata.json`` gives, per model, the parameters of its best trials
(``models.<side>.top_params``, best first; versions saved before that field have only
``best_params``) and the search space they were drawn from (``search.space``). A version
of another timeframe, or of a different search space, is refused (:class:`TrainingError`,
one line): its parameters would not mean the same here.

Slots ``0 .. k-1`` of each model (``k`` = at most :data:`WARM_TRIALS`, and at most
``nTrials``) are sampled as those parameters by :class:`tjtrainer.sampling.SlotSampler`;
the rest of the search goes on from them as usual. What was resolved is stamped on the
run's study (user attribute ``warm_start``) at its first start, so a resumed run redoes a
slot with the same parameters even if ``latest`` moved meanwhile.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from tjtrainer.config import TrainConfig
from tjtrainer.errors import TrainingError
from tjtrainer.paths import UnsafePathError
from tjtrainer.search import SEARCH_SPACE
from tjtrainer.versions import alias_version, version_metadata

# How many of a version's best trials become the first trials of the new search.
WARM_TRIALS = 5
WARM_START_ATTR = "warm_start"
log = logging.getLogger(__name__)


def search_space_record() -> dict[str, str]:
    """The search space as a version's metadata records it (``search.space``)."""
    return {name: repr(distribution) for name, distribution in SEARCH_SPACE.items()}


def top_params(trials: list[Any], count: int = WARM_TRIALS) -> list[dict[str, Any]]:
    """The parameters of the ``count`` best completed trials, best first (what a version
    records as ``top_params``; ``trials`` are Optuna FrozenTrials)."""
    complete = [t for t in trials if t.value is not None and t.state.name == "COMPLETE"]
    ranked = sorted(complete, key=lambda t: (-t.value, t.number))
    return [dict(t.params) for t in ranked[:count]]


def _version(models_dir: Path, wanted: str, timeframe: str, side: str) -> str | None:
    if wanted == "latest":
        return alias_version(models_dir, "champion", timeframe, side)
    return wanted


def _params_of(models_dir: Path, version: str, config: TrainConfig, model: str) -> list[Any]:
    try:
        metadata = version_metadata(models_dir, version)
    except UnsafePathError:
        metadata = None
    if metadata is None:
        raise TrainingError(
            f"warmStart {version}: no complete model version {version} under {models_dir}; "
            "name one that `tjctl models list` lists, or use warmStart: latest or none"
        )
    if metadata.get("timeframe") != config.timeframe:
        raise TrainingError(
            f"warmStart {version}: a model version of timeframe {metadata.get('timeframe')}, "
            f"not {config.timeframe}; name a {config.timeframe} version"
        )
    space = (metadata.get("search") or {}).get("space")
    here = search_space_record()
    if space != here:
        differ = sorted(
            name
            for name in set(here) | set(space or {})
            if (space or {}).get(name) != here.get(name)
        )
        raise TrainingError(
            f"warmStart {version}: its search space differs from this trainer's "
            f"({', '.join(differ) or 'not recorded'}); its trials cannot start this search: "
            "use warmStart: none, or a version of the same search space"
        )
    found = (metadata.get("models") or {}).get(model) or {}
    params = found.get("top_params") or ([found["best_params"]] if found.get("best_params") else [])
    return [p for p in params if isinstance(p, dict) and set(p) == set(SEARCH_SPACE)]


def resolve(config: TrainConfig, model: str) -> dict[str, Any]:
    """What ``config.warm_start`` means for ``model``: ``{"version", "params"}`` (no
    version: a cold start).

    Raises:
        TrainingError: the named version is missing, of another timeframe, or of another
            search space.
    """
    wanted = config.warm_start
    if wanted == "none":
        return {"version": None, "params": []}
    version = _version(config.models_dir, wanted, config.timeframe, model.lower())
    if version is None:
        log.info(
            "warmStart latest: no published %s %s model yet, cold start", config.timeframe, model
        )
        return {"version": None, "params": []}
    params = _params_of(config.models_dir, version, config, model)
    count = min(WARM_TRIALS, config.n_trials)
    return {"version": version, "params": params[:count]}


def warm_params(
    config: TrainConfig, model: str, storage: BaseStorage, study_id: int
) -> list[dict[str, Any]]:
    """The parameters of the first slots of ``model``'s search: stamped on its study at
    the first start, read back from there at a resume."""
    attrs = storage.get_study_user_attrs(study_id)
    if WARM_START_ATTR in attrs:
        stamped = json.loads(attrs[WARM_START_ATTR])
        return list(stamped["params"])
    if storage.get_all_trials(study_id, deepcopy=False):
        # A study begun by a trainer before warm starts: its first slots are taken.
        resolved: dict[str, Any] = {"version": None, "params": []}
    else:
        resolved = resolve(config, model)
    storage.set_study_user_attr(study_id, WARM_START_ATTR, json.dumps(resolved))
    if resolved["version"]:
        log.info(
            "warm start of %s: the first %d trials are the best of %s",
            model,
            len(resolved["params"]),
            resolved["version"],
        )
    return list(resolved["params"])

"""Model aliases, ``champion`` and ``challenger`` of each model (LONG, SHORT) of a
timeframe: switched on disk by :mod:`tjtrainer.versions` (symbolic links, one ``rename``
each, ``*_latest`` following the champions) and recorded in the ``model_aliases`` table
with who and when. ``tjctl models`` and the UI both go through here.

The trainer's own switches (``spec.promotion``: a promoted version becomes the champion of
both models, one that is not becomes their challenger) are recorded in its run's row of
``training_jobs`` (``model_version``, ``promoted``, ``completed_at``); this module reads
them from there.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, desc, select
from sqlalchemy.exc import SQLAlchemyError

from tjcontract.names import TIMEFRAMES
from tjcontract.times import utc_now
from tjcore.schema import model_aliases, training_jobs
from tjcore.store import JobStore
from tjtrainer.paths import UnsafePathError, model_version
from tjtrainer.versions import (
    ALIASES,
    SIDES,
    AliasChange,
    AliasError,
    alias_version,
    make_champion,
    version_metadata,
)

__all__ = ["AliasError", "AliasState", "UnrecordedSwitch", "promote", "rollback", "states", "who"]


class UnrecordedSwitch(Exception):
    """The aliases were switched on disk, but the table refused the record of it."""

    def __init__(self, changes: list[AliasChange], cause: Exception) -> None:
        super().__init__(str(cause))
        self.changes = changes
        self.cause = cause


@dataclass(frozen=True)
class AliasState:
    """What one alias of one model names now, and who set it when."""

    timeframe: str
    model: str  # LONG or SHORT
    alias: str
    version: str | None
    test_spearman: float | None
    set_by: str | None
    set_at: str | None


def who(via: str) -> str:
    """``user@host (via)``: the ``changed_by`` of a switch made here."""
    return f"{getpass.getuser()}@{socket.gethostname()} ({via})"


def _last_record(conn: Connection, timeframe: str, model: str, alias: str) -> Any:
    query = (
        select(model_aliases)
        .where(
            model_aliases.c.timeframe == timeframe,
            model_aliases.c.model == model,
            model_aliases.c.alias == alias,
        )
        .order_by(desc(model_aliases.c.id))
        .limit(1)
    )
    return conn.execute(query).mappings().first()


def _run_of(conn: Connection, version: str) -> Any:
    query = (
        select(training_jobs)
        .where(training_jobs.c.model_version == version)
        .order_by(desc(training_jobs.c.id))
        .limit(1)
    )
    return conn.execute(query).mappings().first()


def _test_spearman(models_dir: Path, version: str | None, model: str) -> float | None:
    found = (version_metadata(models_dir, version) or {}) if version else {}
    value = ((found.get("models") or {}).get(model) or {}).get("test_spearman")
    return float(value) if isinstance(value, int | float) else None


def states(
    store: JobStore, models_dir: Path, timeframes: tuple[str, ...] = TIMEFRAMES
) -> list[AliasState]:
    """Every alias of every model of ``timeframes``, with who set it and when: the last
    switch recorded here if it named the current version, else the run that saved it."""
    found = []
    with store.engine.connect() as conn:
        for timeframe in timeframes:
            for side in SIDES:
                model = side.upper()
                for alias in ALIASES:
                    version = alias_version(models_dir, alias, timeframe, side)
                    set_by = set_at = None
                    record = _last_record(conn, timeframe, model, alias)
                    if version is not None and record is not None and record.version == version:
                        set_by, set_at = record.changed_by, record.changed_at
                    elif version is not None and (run := _run_of(conn, version)) is not None:
                        where = f"{run.namespace}/{run.name}" if run.name else f"job {run.id}"
                        set_by = f"{run.source or 'trainer'} {where} (job {run.id})"
                        set_at = run.completed_at
                    found.append(
                        AliasState(
                            timeframe=timeframe,
                            model=model,
                            alias=alias,
                            version=version,
                            test_spearman=_test_spearman(models_dir, version, model),
                            set_by=set_by,
                            set_at=set_at,
                        )
                    )
    return found


def _record(
    store: JobStore, timeframe: str, changes: list[AliasChange], *, action: str, by: str
) -> None:
    if not changes:
        return
    moment = utc_now()
    rows = [
        {
            "timeframe": timeframe,
            "model": change.side.upper(),
            "alias": change.alias,
            "version": change.new,
            "previous_version": change.old,
            "action": action,
            "changed_by": by,
            "changed_at": moment,
        }
        for change in changes
    ]
    try:
        store.write(lambda conn: conn.execute(model_aliases.insert(), rows))
    except SQLAlchemyError as err:
        raise UnrecordedSwitch(changes, err) from err


def timeframe_of(models_dir: Path, version: str) -> str:
    """The timeframe of a complete version (from its metadata)."""
    try:
        model_version(version)
    except UnsafePathError as err:
        raise AliasError(str(err)) from None
    timeframe = (version_metadata(models_dir, version) or {}).get("timeframe")
    if timeframe not in TIMEFRAMES:
        raise AliasError(
            f"{version} is not a complete model version under {models_dir}; "
            "`tjctl models list` lists them"
        )
    return str(timeframe)


def promote(
    store: JobStore, models_dir: Path, version: str, *, sides: tuple[str, ...] = SIDES, by: str
) -> list[AliasChange]:
    """Make ``version`` the champion of ``sides`` (the champions it replaces become the
    challengers) and record the switch."""
    timeframe = timeframe_of(models_dir, version)
    changes = make_champion(models_dir, timeframe, version, sides)
    _record(store, timeframe, changes, action="promote", by=by)
    return changes


def rollback_target(store: JobStore, models_dir: Path, timeframe: str, side: str) -> str | None:
    """The version the current champion of ``side`` replaced: from its switch recorded
    here, or (a trainer's promotion) from its metadata's ``promotion.replaces``."""
    current = alias_version(models_dir, "champion", timeframe, side)
    if current is None:
        return None
    with store.engine.connect() as conn:
        record = _last_record(conn, timeframe, side.upper(), "champion")
    if record is not None and record.version == current:
        return str(record.previous_version) if record.previous_version else None
    replaces = ((version_metadata(models_dir, current) or {}).get("promotion") or {}).get(
        "replaces"
    ) or {}
    found = replaces.get(side.upper())
    return str(found) if found else None


def rollback(
    store: JobStore, models_dir: Path, timeframe: str, *, sides: tuple[str, ...] = SIDES, by: str
) -> list[AliasChange]:
    """Undo the last switch of the champion of each of ``sides``: the version it replaced
    is champion again, and the one rolled back becomes the challenger."""
    targets = {side: rollback_target(store, models_dir, timeframe, side) for side in sides}
    missing = [side for side, target in targets.items() if target is None]
    if missing:
        raise AliasError(
            f"the {' and '.join(missing)} champion of {timeframe} replaced no earlier version; "
            "nothing to roll back to (`tjctl models promote VERSION` sets one)"
        )
    changes: list[AliasChange] = []
    for target in dict.fromkeys(targets.values()):
        group = tuple(side for side in sides if targets[side] == target)
        changes += make_champion(models_dir, timeframe, str(target), group)
    _record(store, timeframe, changes, action="rollback", by=by)
    return changes


def history(store: JobStore, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest recorded switches, newest first."""
    query = select(model_aliases).order_by(desc(model_aliases.c.id)).limit(limit)
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]

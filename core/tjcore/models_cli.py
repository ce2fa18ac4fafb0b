"""``tjctl models list | promote VERSION | rollback``: the model aliases
(:mod:`tjcore.aliases`) from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from tjcontract.layout import models_dir
from tjcontract.names import TIMEFRAMES
from tjcore.aliases import (
    AliasError,
    UnrecordedSwitch,
    history,
    promote,
    rollback,
    states,
    who,
)
from tjcore.settings import Settings
from tjcore.store import JobStore
from tjtrainer.versions import SIDES, AliasChange, list_versions, version_metadata

MODEL_CHOICES = ("long", "short", "both")


def _sides(choice: str) -> tuple[str, ...]:
    return SIDES if choice == "both" else (choice,)


def _context() -> tuple[JobStore, Path]:
    from tjcore.cli import _store  # one way to open the table, with its driver check

    return _store(), models_dir(Settings.from_env().shared_data_path)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _print_table(lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _scores(models_dir: Path, version: str) -> dict[str, float | None]:
    models = (version_metadata(models_dir, version) or {}).get("models") or {}
    return {m: (models.get(m) or {}).get("test_spearman") for m in ("LONG", "SHORT")}


def cmd_list(args: argparse.Namespace) -> int:
    store, models_dir = _context()
    timeframes = (args.timeframe,) if args.timeframe else TIMEFRAMES
    found = states(store, models_dir, timeframes)
    versions: list[dict[str, Any]] = [
        {"version": v, "test_spearman": _scores(models_dir, v)}
        for tf in timeframes
        for v in list_versions(models_dir, tf)
    ]
    if args.output == "json":
        document = {
            "aliases": [asdict(s) for s in found],
            "versions": versions,
            "history": history(store, limit=args.history),
        }
        print(json.dumps(document, indent=2))
        return 0
    header = ("TF", "MODEL", "ALIAS", "VERSION", "TEST SPEARMAN", "SET BY", "SET AT")
    rows: list[tuple[str, ...]] = [header]
    _print_table(
        rows
        + [
            (
                s.timeframe,
                s.model,
                s.alias,
                s.version or "-",
                _score(s.test_spearman),
                s.set_by or "-",
                s.set_at or "-",
            )
            for s in found
        ]
    )
    print()
    named = {(s.version, s.model, s.alias) for s in found if s.version}
    lines: list[tuple[str, ...]] = [("VERSION", "TEST LONG", "TEST SHORT", "ALIASES")]
    for entry in versions:
        version = str(entry["version"])
        tags = [f"{a} {m}" for (v, m, a) in sorted(named) if v == version]
        scores = entry["test_spearman"]
        lines.append(
            (version, _score(scores["LONG"]), _score(scores["SHORT"]), ", ".join(tags) or "-")
        )
    _print_table(lines)
    return 0


def _report(changes: list[AliasChange], nothing: str) -> None:
    if not changes:
        print(nothing)
    for change in changes:
        print(f"{change.alias} {change.side.upper()}: {change.old or '-'} -> {change.new}")


def _unrecorded(err: UnrecordedSwitch) -> int:
    from tjcore.cli import _explain

    assert isinstance(err.cause, SQLAlchemyError)
    made = "; ".join(f"{c.alias} {c.side.upper()} -> {c.new}" for c in err.changes)
    return _fail(f"switched on disk ({made}) but not recorded: {_explain(err.cause)}")


def cmd_promote(args: argparse.Namespace) -> int:
    store, models_dir = _context()
    try:
        changes = promote(
            store, models_dir, args.version, sides=_sides(args.model), by=who("tjctl")
        )
    except AliasError as err:
        return _fail(str(err))
    except UnrecordedSwitch as err:
        return _unrecorded(err)
    _report(changes, f"{args.version} is the champion already; nothing changed")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    store, models_dir = _context()
    try:
        changes = rollback(
            store, models_dir, args.timeframe, sides=_sides(args.model), by=who("tjctl")
        )
    except AliasError as err:
        return _fail(str(err))
    except UnrecordedSwitch as err:
        return _unrecorded(err)
    _report(changes, "nothing changed")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tjctl models`` to ``tjctl``'s subcommands."""
    models = sub.add_parser("models", help="model versions and their champion/challenger aliases")
    verbs = models.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = verbs.add_parser("list", help="the aliases (who set them, when) and the versions")
    listing.add_argument("--timeframe", choices=TIMEFRAMES, help="one timeframe only")
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table")
    listing.add_argument(
        "--history", type=int, default=20, help="recorded switches in the JSON (20)"
    )
    listing.set_defaults(func=cmd_list)

    promoting = verbs.add_parser(
        "promote", help="make VERSION the champion (the champion it replaces: the challenger)"
    )
    promoting.add_argument("version", help="a version folder's name, e.g. 15m_20261201_120000")
    promoting.add_argument("--model", choices=MODEL_CHOICES, default="both", help="(both)")
    promoting.set_defaults(func=cmd_promote)

    rolling = verbs.add_parser(
        "rollback", help="undo the last switch of the champion (it becomes the challenger)"
    )
    rolling.add_argument("--timeframe", choices=TIMEFRAMES, required=True)
    rolling.add_argument("--model", choices=MODEL_CHOICES, default="both", help="(both)")
    rolling.set_defaults(func=cmd_rollback)

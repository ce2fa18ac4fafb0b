"""Build ``tjctl``'s parser from the components' commands and run one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from tjcore import cli as core_cli
from tjoperator import cli as operator_cli
from tjtrainer import cli as trainer_cli
from tjui import cli as ui_cli

# Commands of tools installed beside the product (``register(sub)`` callables).
PLUGIN_GROUP = "tjctl.commands"


def build_parser() -> argparse.ArgumentParser:
    """``tjctl`` with every component's commands and those of installed plugins."""
    parser = argparse.ArgumentParser(
        prog="tjctl",
        description="Train XGBoost LONG/SHORT models with Optuna, locally or "
        "through the TrainingJob operator.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    core_cli.register(sub)
    trainer_cli.add_dataset_parser(sub)
    operator_cli.register(sub)
    ui_cli.register(sub)
    for plugin in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        plugin.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except core_cli.USER_ERRORS as err:
        print(f"error: {core_cli.explain(err)}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""One quantity, three spellings: a spec field's name, its Python name and its flag."""

from __future__ import annotations

import argparse
import dataclasses

from tjcontract.names import flag_name, python_name
from tjcontract.spec import FIELDS_BY_NAME
from tjtrainer.cli import build_parser
from tjtrainer.config import TrainConfig

# The spec fields a trainer run is given (the rest are the Job's: image, resources, ...).
TRAINER_FIELDS = (
    "timeframe",
    "nTrials",
    "trainRatio",
    "seed",
    "parallelism",
    "cvFolds",
    "embargo",
    "promotion",
    "workers",
    "warmStart",
)


def test_a_field_name_becomes_the_python_name_and_the_flag() -> None:
    assert python_name("nTrials") == "n_trials"
    assert flag_name("nTrials") == "--n-trials"
    assert python_name("seed") == "seed"
    assert flag_name("ttlSecondsAfterFinished") == "--ttl-seconds-after-finished"


def _train_flags() -> dict[str, argparse.Action]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    return {option: action for action in train._actions for option in action.option_strings}


def test_the_trainer_takes_each_spec_field_by_those_names_with_its_default() -> None:
    config_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    flags = _train_flags()
    for name in TRAINER_FIELDS:
        assert name in FIELDS_BY_NAME
        assert python_name(name) in config_fields, name
        assert flag_name(name) in flags, name
        default = FIELDS_BY_NAME[name].default
        if default is not None:
            assert flags[flag_name(name)].default == default, name
            config_default = config_fields[python_name(name)].default
            assert config_default in (default, dataclasses.MISSING), name

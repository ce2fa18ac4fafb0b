"""The one set of checks every component reads typed values with: what they accept, and
the words of what they refuse (the user's mistake and the fix in one line)."""

from __future__ import annotations

import argparse

import pytest

from tjcontract import checks


@pytest.mark.parametrize(
    ("check", "text", "words"),
    [
        (checks.integer(1, 10), "0", "must be an integer from 1 to 10, got 0"),
        (checks.integer(1, 10), "1.5", "must be an integer from 1 to 10, got '1.5'"),
        (checks.integer(low=1), "x", "must be an integer >= 1, got 'x'"),
        (checks.number(0.5, 0.95), "0.3", "must be a number from 0.5 to 0.95, got 0.3"),
        (checks.number(0.5, 0.95), "nan", "must be a finite number from 0.5 to 0.95, got nan"),
        (checks.number(above=0, unit="seconds"), "-1", "must be a number of seconds > 0, got -1"),
        (checks.number(above=0, unit="seconds"), "inf", "a finite number of seconds > 0, got inf"),
        (checks.number(0, below=10_000), "10000", "must be a number in [0, 10000), got 10000"),
        (checks.number(above=0, high=1000), "0", "must be a number in (0, 1000], got 0"),
        (checks.port(), "0", "must be a TCP port number from 1 to 65535, got '0'"),
        (checks.port(zero_for_any=True), "65536", "from 0 to 65535 (0: any free port)"),
        (checks.choice(("15m", "1h")), "4h", "must be one of 15m, 1h, got '4h'"),
        (checks.matching(r"[a-z]+", "lower-case letters"), "A", "must be lower-case letters"),
    ],
)
def test_a_refused_value_says_what_it_must_be_and_what_was_given(
    check: checks.Check[object], text: str, words: str
) -> None:
    with pytest.raises(ValueError) as refused:
        check(text)
    assert words in str(refused.value)


@pytest.mark.parametrize(
    ("check", "text", "value"),
    [
        (checks.integer(1, 10), "10", 10),
        (checks.number(0.5, 0.95), "0.95", 0.95),
        (checks.number(above=0, high=1000), "1000", 1000.0),
        (checks.port(zero_for_any=True), "0", 0),
        (checks.choice(("15m", "1h")), "1h", "1h"),
    ],
)
def test_an_allowed_value_comes_back_typed(
    check: checks.Check[object], text: str, value: object
) -> None:
    assert check(text) == value


def test_the_name_the_user_typed_goes_first_with_the_error_class_asked_for() -> None:
    class SettingsError(ValueError):
        pass

    with pytest.raises(SettingsError, match=r"^TJ_X must be an integer >= 1, got '0x'$"):
        checks.named(checks.integer(low=1), "TJ_X", SettingsError)("0x")
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--n", type=checks.flag_type(checks.integer(1, 3), "--n"))
    with pytest.raises(argparse.ArgumentError, match=r"--n must be an integer from 1 to 3"):
        parser.parse_args(["--n", "4"])

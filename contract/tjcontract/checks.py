"""One way to check a value a user typed: a flag, an environment variable, a form field.

A check turns text into a value or raises :class:`ValueError` whose message says what
the value must be and what was given (``must be in [1, 10000], got 0``); the caller puts
the name the user typed in front of it, through :func:`named` (an environment variable,
a :class:`ValueError` or a subclass) or :func:`flag_type` (an ``argparse`` flag). Every
component's settings (``tjcore.settings``, ``tjoperator.config``, the trainer's and the
UI's flags) are read through these, so the same mistake gets the same words everywhere.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
Check = Callable[[str], T]


def fmt_number(value: float) -> str:
    """``3`` for 3.0, ``0.95`` for 0.95: a bound as people write it."""
    return str(int(value)) if float(value).is_integer() else str(value)


def integer(low: int | None = None, high: int | None = None) -> Check[int]:
    """A whole number, optionally within ``[low, high]``."""

    def check(text: str) -> int:
        words = bounds_words("an integer", low, high)
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be {words}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"must be {words}, got {text}")
        return value

    return check


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
    unit: str = "",
) -> Check[float]:
    """A finite number within the closed bounds ``low``/``high`` and the open bounds
    ``above``/``below``; ``unit`` ("seconds") goes into the message."""
    kind = f"a number of {unit}" if unit else "a number"

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            words = bounds_words(kind, low, high, above, below)
            raise ValueError(f"must be {words}, got {text!r}") from None
        inside = math.isfinite(value)
        inside = inside and (low is None or value >= low) and (high is None or value <= high)
        inside = inside and (above is None or value > above) and (below is None or value < below)
        if not inside:
            finite_kind = kind if math.isfinite(value) else f"a finite {kind[2:]}"
            words = bounds_words(finite_kind, low, high, above, below)
            raise ValueError(f"must be {words}, got {text}")
        return value

    return check


def seconds() -> Check[float]:
    """A duration: a finite number of seconds > 0."""
    return number(above=0, unit="seconds")


def port(*, zero_for_any: bool = False) -> Check[int]:
    """A TCP port number; with ``zero_for_any`` also 0 (any free port)."""
    low = 0 if zero_for_any else 1
    words = "from 0 to 65535 (0: any free port)" if zero_for_any else "from 1 to 65535"

    def check(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= 65535:
            raise ValueError(f"must be a TCP port number {words}, got {text!r}")
        return int(text)

    return check


def choice(values: Sequence[str]) -> Check[str]:
    """One of ``values``, spelled exactly."""

    def check(text: str) -> str:
        if text not in values:
            raise ValueError(f"must be one of {', '.join(values)}, got {text!r}")
        return text

    return check


def matching(pattern: str, words: str) -> Check[str]:
    """A string the whole of which matches ``pattern``; ``words`` describe it."""
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"must be {words}, got {text!r}")
        return text

    return check


def named(
    check: Check[T], name: str, error: type[Exception] = ValueError, sep: str = " "
) -> Check[T]:
    """``check`` whose failure is ``error("<name> must be ..., got ...")``."""

    def checked(text: str) -> T:
        try:
            return check(text)
        except ValueError as err:
            raise error(f"{name}{sep}{err}") from None

    return checked


def flag_type(check: Check[T], flag: str | None = None) -> Check[T]:
    """``check`` as an ``argparse`` ``type=``: argparse prints ``argument --flag: ...``
    with the message (``flag`` repeats the name inside it, as the trainer's flags do)."""
    if flag is None:
        return named(check, "", argparse.ArgumentTypeError, sep="")
    return named(check, flag, argparse.ArgumentTypeError)


def bounds_words(
    kind: str,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> str:
    """``an integer from 1 to 10``, ``a number in (0, 1000]``, ``an integer >= 1``."""
    if above is None and below is None and low is not None and high is not None:
        return f"{kind} from {fmt_number(low)} to {fmt_number(high)}"
    lower = (f"[{fmt_number(low)}", f">= {fmt_number(low)}") if low is not None else None
    if above is not None:
        lower = (f"({fmt_number(above)}", f"> {fmt_number(above)}")
    upper = (f"{fmt_number(high)}]", f"<= {fmt_number(high)}") if high is not None else None
    if below is not None:
        upper = (f"{fmt_number(below)})", f"< {fmt_number(below)}")
    if lower and upper:
        return f"{kind} in {lower[0]}, {upper[0]}"
    one = lower or upper
    return f"{kind} {one[1]}" if one else kind

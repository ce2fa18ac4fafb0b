"""Print the requirements of the project's extras, one a line, read from pyproject.toml.

Used inside the Dockerfiles (standard library only) and by ``tjctl images build``:

    python images/requirements.py trainer --replace xgboost=xgboost-cpu > requirements.txt
    pip install -r requirements.txt && pip install --no-deps .

``--replace OLD=NEW`` swaps a distribution for another that provides the same module
with the same version specifier: the trainer image uses ``xgboost-cpu`` (no NVIDIA
libraries) where the ``trainer`` extra says ``xgboost``.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?(.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(
    extras: list[str], replace: dict[str, str], pyproject: Path = PYPROJECT
) -> list[str]:
    """The base dependencies plus those of ``extras`` (the project's own extras expanded)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    own = canonical(project["name"])
    found: list[str] = []
    todo = list(project.get("dependencies", []))
    seen: set[str] = set()
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"{pyproject} has no extra {extra!r} (has: {', '.join(optional)})")
        todo += optional[extra]
    while todo:
        text = todo.pop(0)
        match = NAME.match(text)
        if not match:
            raise SystemExit(f"cannot read the requirement {text!r} of {pyproject}")
        name, sub, rest = match.groups()
        if canonical(name) == own:  # e.g. all = ["trainingjob-operator[trainer,ui]"]
            for extra in (sub or "[]")[1:-1].split(","):
                if extra.strip() and extra.strip() not in seen:
                    seen.add(extra.strip())
                    todo += optional[extra.strip()]
            continue
        line = f"{replace.get(canonical(name), name)}{sub or ''}{rest}".strip()
        if line not in found:
            found.append(line)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", help="extras of the project, e.g. trainer")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW")
    args = parser.parse_args()
    swaps = {}
    for item in args.replace:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            parser.error(f"--replace wants OLD=NEW, got {item!r}")
        swaps[canonical(old)] = new
    print("\n".join(requirements(args.extras, swaps)))


if __name__ == "__main__":
    main()

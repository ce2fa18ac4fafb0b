"""The packages import one way only: contract <- trainer <- core <- operator / UI <- tjctl.

Every module of each product package is parsed (imports inside functions included) and
each first-party import is checked against that direction: the operator and the UI never
import each other, nothing in the product imports the dev cluster (test scaffolding, which
may itself import anything), and ``tjcontract`` imports nothing but the standard library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each product package, its folder, and its place in the direction (lower is imported by
# higher, never the other way; equal places other than the same package: neither way).
PACKAGES = {
    "tjcontract": ("contract/tjcontract", 0),
    "tjtrainer": ("trainer-image/tjtrainer", 1),
    "tjcore": ("core/tjcore", 2),
    "tjoperator": ("operator/tjoperator", 3),
    "tjui": ("ui/tjui", 3),
    "tjctl": ("cli/tjctl", 4),
}
SCAFFOLDING = "tjdevcluster"
FIRST_PARTY = {*PACKAGES, SCAFFOLDING}


def imported_names(path: Path) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every import in the module at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str, folder: Path) -> list[str]:
    """Each import in ``folder`` (the package ``package``) against the direction."""
    _, place = PACKAGES[package]
    problems = []
    for path in sorted(folder.rglob("*.py")):
        where = path.relative_to(folder.parent)
        for line, name in imported_names(path):
            if package == "tjcontract":
                if name != package and name not in sys.stdlib_module_names:
                    problems.append(f"{where}:{line}: tjcontract imports {name} (stdlib only)")
                continue
            if name == package or name not in FIRST_PARTY:
                continue
            if name == SCAFFOLDING:
                problems.append(f"{where}:{line}: the product imports {SCAFFOLDING}")
            elif PACKAGES[name][1] >= place:
                problems.append(f"{where}:{line}: {package} imports {name}, against the direction")
    return problems


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_package_imports_only_downwards(package: str) -> None:
    folder = ROOT / PACKAGES[package][0]
    assert folder.is_dir(), folder
    assert violations(package, folder) == []


def test_a_wrong_import_is_found(tmp_path: Path) -> None:
    """The checker itself: a package that imports upwards, sideways, the scaffolding, or
    (the contract) anything outside the standard library is reported, line by line."""
    contract = tmp_path / "tjcontract"
    contract.mkdir()
    (contract / "bad.py").write_text("import json\nimport yaml\nfrom tjtrainer import paths\n")
    assert violations("tjcontract", contract) == [
        "tjcontract/bad.py:2: tjcontract imports yaml (stdlib only)",
        "tjcontract/bad.py:3: tjcontract imports tjtrainer (stdlib only)",
    ]
    operator = tmp_path / "tjoperator"
    operator.mkdir()
    (operator / "bad.py").write_text(
        "import tjcore.spec\nfrom tjoperator import kube\n\n\ndef f():\n"
        "    from tjui import app\n    import tjdevcluster.testing\n"
    )
    assert sorted(violations("tjoperator", operator)) == [
        "tjoperator/bad.py:6: tjoperator imports tjui, against the direction",
        "tjoperator/bad.py:7: the product imports tjdevcluster",
    ]
    trainer = tmp_path / "tjtrainer"
    trainer.mkdir()
    (trainer / "bad.py").write_text("from tjcontract import names\nfrom tjcore import store\n")
    assert violations("tjtrainer", trainer) == [
        "tjtrainer/bad.py:2: tjtrainer imports tjcore, against the direction"
    ]

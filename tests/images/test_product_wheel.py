"""The wheel users install holds the product's packages and not the test scaffolding."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tjdevcluster import images


def test_the_wheel_holds_the_product_and_tjctl_but_not_the_dev_cluster(tmp_path: Path) -> None:
    """Built from the images' build context (what the Dockerfiles install), out of the tree."""
    context, wheels = tmp_path / "context", tmp_path / "wheels"
    images.assemble_context(context, None)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(wheels), str(context)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("trainingjob_operator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith("info")}
    assert packages == {"tjcontract", "tjtrainer", "tjcore", "tjoperator", "tjui", "tjctl"}
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tjctl = tjctl.main:main" in text
    assert "tjdevcluster" not in text


def test_tjctl_gets_the_dev_commands_from_the_installed_scaffolding() -> None:
    """In the development venv (``make venv``) ``tjctl`` lists the dev tools' commands,
    which come from devcluster/pyproject.toml's ``tjctl.commands`` entry points."""
    done = subprocess.run(
        [sys.executable, "-m", "tjctl", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("run", "dataset", "operator", "ui", "cluster-tools", "dev-cluster", "images"):
        assert f"    {command}" in done.stdout, done.stdout

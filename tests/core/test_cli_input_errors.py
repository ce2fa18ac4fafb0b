"""Bad input to ``tjctl`` (environment, flags, manifest files, a read-only volume) is one
``error:`` line saying what is wrong and what to do, never a traceback; each case runs the
real command in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TJCTL = [sys.executable, "-m", "tjctl"]
MANIFEST = """\
apiVersion: mltraining.dev/v1alpha1
kind: TrainingJob
metadata:
  name: demo
spec:
  timeframe: 15m
  nTrials: 3
"""


def tjctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TJCTL, *args], env=env, capture_output=True, text=True, timeout=120)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (argparse's usage line aside)."""
    assert done.returncode in (1, 2), (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("usage:")]
    lines = [line for line in lines if not line.startswith(" ")]  # usage continuation
    lines = [line for line in lines if " INFO " not in line]  # the worker's start-up log
    assert len(lines) == 1, done.stderr
    assert "error: " in lines[0]
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ["SHARED_DATA_PATH"] = str(tmp_path / "shared")
    return environ


@pytest.mark.parametrize(
    ("variables", "args", "wanted"),
    [
        ({"DATABASE_URL": "nonsense"}, ["jobs"], "DATABASE_URL=nonsense is not a database URL"),
        (
            {"DATABASE_URL": "mysql+mysqldb://tj:s3cret@127.0.0.1/jobs"},
            ["jobs"],
            "needs the Python driver 'MySQLdb', which is not installed",
        ),
        ({"DATABASE_URL": "sqlite://"}, ["jobs"], "is an in-memory SQLite database"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, ["submit", "--timeframe", "15m"], "in-memory"),
        (
            {"SHARED_DATA_PATH": "/dev/null"},
            ["jobs"],
            "SHARED_DATA_PATH=/dev/null cannot be the shared folder: /dev/null is not a folder",
        ),
        (
            {"TRAINING_POLL_INTERVAL": "nan"},
            ["worker", "--once"],
            "TRAINING_POLL_INTERVAL must be a finite number",
        ),
        ({}, ["worker", "--once", "--interval", "inf"], "--interval must be a finite number"),
        (
            {},
            ["jobs", "--limit", str(10**30)],
            "--limit: must be an integer from 1 to 9223372036854775807",
        ),
        ({}, ["show", str(10**30)], "id: must be an integer from 1 to 9223372036854775807"),
        ({}, ["cancel", str(2**63)], "id: must be an integer from 1 to 9223372036854775807"),
    ],
)
def test_a_bad_setting_or_flag_is_one_error_line(
    env: dict[str, str], variables: dict[str, str], args: list[str], wanted: str
) -> None:
    line = one_error_line(tjctl(*args, env=env | variables))
    assert wanted in line
    assert "s3cret" not in line


def test_a_manifest_that_is_not_utf8_is_named(env: dict[str, str], tmp_path: Path) -> None:
    manifest = tmp_path / "latin1.yaml"
    manifest.write_bytes(MANIFEST.replace("demo", "d\xe9mo").encode("latin-1"))
    line = one_error_line(tjctl("run", "-f", str(manifest), env=env))
    assert f"{manifest}: not UTF-8 text (byte 0xe9" in line


def test_a_folder_given_as_manifest_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    line = one_error_line(tjctl("run", "-f", str(tmp_path), env=env))
    assert f"{tmp_path}: is a folder; -f takes one manifest file" in line


def test_a_key_given_twice_in_a_manifest_is_refused_with_its_lines(
    env: dict[str, str], tmp_path: Path
) -> None:
    manifest = tmp_path / "twice.yaml"
    manifest.write_text(MANIFEST + "  nTrials: 200\n", encoding="utf-8")
    line = one_error_line(tjctl("run", "-f", str(manifest), env=env))
    assert "line 8: key 'nTrials' appears twice in the same mapping (first on line 7)" in line
    assert not (tmp_path / "shared" / "training_jobs.db").exists()  # nothing was queued


@pytest.fixture
def read_only_volume(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (a tmpfs remounted ro) holding a table with one row."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(volume)])
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield volume
    finally:
        subprocess.run(["umount", str(volume)], check=True)


@pytest.mark.parametrize(
    "args",
    [["jobs"], ["show", "1"], ["cancel", "1"], ["submit", "--timeframe", "15m"], ["worker"]],
)
def test_a_read_only_volume_is_one_error_line(
    env: dict[str, str], read_only_volume: Path, args: list[str]
) -> None:
    env["SHARED_DATA_PATH"] = str(read_only_volume / "shared")
    assert tjctl("submit", "--timeframe", "15m", env=env).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_volume)], check=True)
    line = one_error_line(tjctl(*args, env=env))
    assert "is on a read-only filesystem" in line
    assert "mount it read-write or point SHARED_DATA_PATH (or DATABASE_URL)" in line


def test_a_missing_shared_folder_on_a_read_only_volume_is_one_error_line(
    env: dict[str, str], read_only_volume: Path, tmp_path: Path
) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_volume)], check=True)
    env["SHARED_DATA_PATH"] = str(read_only_volume / "new")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    for args in (["jobs"], ["run", "-f", str(manifest)]):
        line = one_error_line(tjctl(*args, env=env))
        assert f"{read_only_volume / 'new'} is on a read-only filesystem" in line

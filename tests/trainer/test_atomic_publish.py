"""Publishing a model version is one atomic step: a kill or a full disk at any point
leaves every ``*_latest`` name on one whole version (the old or the new one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path(__file__).with_name("publish_faults.py")


def run_driver(*command: str) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TJTRAINER_KILL_AT", None)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    cases: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])["cases"]
    return cases


def test_a_kill_at_any_step_of_a_save_leaves_latest_whole(tmp_path: Path) -> None:
    cases = run_driver(sys.executable, str(DRIVER), "kill", str(tmp_path / "models"))
    killed = [c for c in cases if c["outcome"] == "killed"]
    assert len(killed) >= 10, cases  # every file write, the reservation and the switch
    assert cases[-1]["outcome"] == "ok"
    mixed = [c for c in cases if c["latest"].startswith("error")]
    assert not mixed, mixed
    # Latest is the version before, or (killed after the switch) the one being saved.
    assert all(c["latest"] >= c["previous"] for c in cases), cases
    assert sum(c["latest"] == c["previous"] for c in killed) >= 10, cases


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a small tmpfs needs root and unshare (a private mount namespace)",
)
def test_a_full_disk_at_any_step_of_a_save_leaves_latest_whole(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    script = f'mount -t tmpfs -o size=1m tj-test "{mount}" && exec "$@"'
    cases = run_driver(
        "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
        sys.executable, str(DRIVER), "enospc", str(mount / "models"),
    )  # fmt: skip
    failed = [c for c in cases if c["outcome"] == "enospc"]
    assert len(failed) >= 5, cases
    assert cases[-1]["outcome"] == "ok"
    mixed = [c for c in cases if c["latest"].startswith("error")]
    assert not mixed, mixed
    assert all(c["latest"] == c["previous"] for c in failed), failed


@pytest.mark.slow
def test_twenty_saves_at_once_get_twenty_distinct_versions(tmp_path: Path) -> None:
    models, go = tmp_path / "models", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    savers = [
        subprocess.Popen(
            [sys.executable, str(DRIVER), "once", str(models), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(20)
    ]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("ready-*"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all twenty save within the same second or two
    results = [saver.communicate(timeout=300) for saver in savers]
    failures = [err for saver, (_, err) in zip(savers, results, strict=True) if saver.returncode]
    assert not failures, failures[0]
    names = [json.loads(out.strip().splitlines()[-1])["version"] for out, _ in results]
    assert len(set(names)) == 20, names
    assert len({name[:19] for name in names}) < 20  # several shared a second
    complete = sorted(
        p.name for p in models.iterdir() if not p.is_symlink() and (p / "metadata.json").is_file()
    )
    assert complete == sorted(names)
    latest = os.readlink(models / "latest_15m")
    assert latest in names
    assert json.loads((models / "metadata_15m_latest.json").read_text())["version"] == latest


def _save_in_process(models: Path, seed: int) -> str:
    sys.path.insert(0, str(DRIVER.parent))
    import publish_faults

    return publish_faults.save(models, seed)


def test_the_next_save_removes_what_killed_saves_left(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = _save_in_process(models, 1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for kill_at in (2, 5):  # in the middle of writing a file, and between two files
        code = (
            "import sys; from pathlib import Path; import publish_faults as p; "
            f"p.save(Path({str(models)!r}), {kill_at})"
        )
        env["TJTRAINER_KILL_AT"] = str(kill_at)
        killed = subprocess.run([sys.executable, "-c", code], cwd=DRIVER.parent, env=env)
        assert killed.returncode == -9
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from tjtrainer.versions import reserved_version\n"
         f"with reserved_version(Path({str(models)!r}), '15m') as r:\n"
         "    print(r.version, flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        live = holder.stdout.readline().strip()
        partial = [p for p in models.iterdir() if p.is_dir() and not (p / "metadata.json").exists()]
        temporaries = list(models.rglob(".*.tmp"))
        assert len(partial) == 3 and temporaries, (partial, temporaries)
        an_hour_ago = time.time() - 2 * 3600
        for path in [*partial, *temporaries, *(f for p in partial for f in p.iterdir())]:
            os.utime(path, (an_hour_ago, an_hour_ago), follow_symlinks=False)
        recent = models / "15m_20990101_000000"  # a save that may still be starting
        recent.mkdir()
        latest = _save_in_process(models, 9)
        left = sorted(p.name for p in models.iterdir() if not p.is_symlink())
        assert left == sorted([first, live, latest, recent.name]), left
        assert not list(models.rglob("*.tmp"))
    finally:
        holder.terminate()
        holder.wait()


def test_load_latest_verifies_the_checksums(tmp_path: Path) -> None:
    import numpy as np

    from tjtrainer.models import ModelFileError, load_latest

    models = tmp_path / "models"
    version = _save_in_process(models, 3)
    model = load_latest(models, "15m", "long")
    assert model.version == version and model.features == ["a", "b", "c"]
    rows = np.arange(12.0).reshape(4, 3)
    import publish_faults

    scaled = publish_faults.SCALER.transform(rows)
    expected = publish_faults.boosters(3, 3)["LONG"].inplace_predict(scaled)
    np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-6)
    damaged = models / version / "model_long.ubj"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"model_long\.ubj has SHA-256 .* records"):
        load_latest(models, "15m", "long")
    assert load_latest(models, "15m", "short").side == "SHORT"


def test_copied_latest_files_of_an_older_release_become_links(tmp_path: Path) -> None:
    models = tmp_path / "models"
    old = _save_in_process(models, 4)
    links = [p for p in models.iterdir() if p.is_symlink() and "_latest" in p.name]
    contents = {link: link.read_bytes() for link in links}
    for pointer in ("latest_15m", "champion_15m_long", "champion_15m_short"):
        (models / pointer).unlink()  # an older release had no pointer and no aliases
    for link, content in contents.items():  # the layout before links: copies
        link.unlink()
        link.write_bytes(content)
    assert json.loads((models / "metadata_15m_latest.json").read_text())["version"] == old
    new = _save_in_process(models, 5)
    assert os.readlink(models / "latest_15m") == new
    for name in ("model_long_15m_latest.ubj", "scaler_15m_latest.pkl"):
        assert os.readlink(models / name) == f"latest_15m/{name.replace('_15m_latest', '')}"
    assert json.loads((models / "metadata_15m_latest.json").read_text())["version"] == new

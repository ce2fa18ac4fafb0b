"""The pod harness's pure translation rules (no cluster needed): path rewriting, $(VAR)
expansion, command resolution, PVC folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tjdevcluster import pvc_dir
from tjdevcluster.podspec import LaunchError, expand_refs, path_rewriter, resolve_command


def test_mount_paths_are_rewritten_as_whole_path_prefixes() -> None:
    rewrite = path_rewriter({"/data": Path("/tmp/v/pvc/c"), "/data/models": Path("/m")})
    assert rewrite("/data") == "/tmp/v/pvc/c"
    assert rewrite("--out=/data/runs/x") == "--out=/tmp/v/pvc/c/runs/x"
    assert rewrite("/data/models/a.pkl") == "/m/a.pkl"  # the longest mountPath wins
    assert rewrite("open('/data/x'); open(\"/data\")") == (
        "open('/tmp/v/pvc/c/x'); open(\"/tmp/v/pvc/c\")"
    )
    for untouched in ("/database", "/x/data", "data/x", "file:///data", "/data.bak"):
        assert rewrite(untouched) == untouched


def test_kubernetes_variable_expansion() -> None:
    env = {"A": "1", "DIR": "/data"}
    assert expand_refs("$(A)-$(DIR)/x-$(MISSING)-$$(A)", env) == "1-/data/x-$(MISSING)-$(A)"


def test_only_python_and_project_commands_run() -> None:
    assert resolve_command("python") == sys.executable
    assert resolve_command("/usr/local/bin/python3.11") == sys.executable
    assert resolve_command("tjctl") == str(Path(sys.executable).parent / "tjctl")
    with pytest.raises(LaunchError, match="not supported"):
        resolve_command("/bin/sh")


def test_pvc_folder_is_one_per_claim_name(tmp_path: Path) -> None:
    assert pvc_dir(tmp_path, "shared-data") == tmp_path / "pvc" / "shared-data"
    with pytest.raises(ValueError):
        pvc_dir(tmp_path, "../escape")


def test_subpath_mounts_and_the_folder_they_meet_in(tmp_path: Path) -> None:
    """A trainer pod's mounts (job_builder.trainer_mounts): each subPath maps to its
    folder of the volume, and /shared, where they meet, to the volume's root."""
    from tjdevcluster.podspec import build_launch

    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "c"}}]},
    }
    container = {
        "name": "trainer",
        "command": ["python", "-m", "tjtrainer"],
        "args": ["train", "--run-dir", "/shared/runs/ns/j", "--data-root", "/shared"],
        "volumeMounts": [
            {"name": "shared", "mountPath": "/shared/runs/ns/j", "subPath": "runs/ns/j"},
            {"name": "shared", "mountPath": "/shared/datasets", "subPath": "datasets"},
        ],
    }
    root = tmp_path / "pvc" / "c"
    launch = build_launch(pod, container, tmp_path, tmp_path / "pod", lambda *_: None, {}, "n")
    assert launch.argv[-4:] == ["--run-dir", str(root / "runs/ns/j"), "--data-root", str(root)]
    assert launch.mounts["/shared/datasets"] == root / "datasets"
    escaping = {**container, "volumeMounts": [{**container["volumeMounts"][1], "subPath": "../x"}]}
    with pytest.raises(LaunchError, match=r"has '\.\.'"):
        build_launch(pod, escaping, tmp_path, tmp_path / "pod", lambda *_: None, {}, "n")

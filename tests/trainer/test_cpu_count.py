"""XGBoost's threads are sized from the CPUs we may use, a pod's CPU limit included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tjtrainer.cpus import available_cpus, cgroup_cpu_quota


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) == 1  # floor(1.5), never more than the mask


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("quota", "expected"), [("-1", None), ("50000", 0.5), ("400000", 4.0)])
def test_cgroup_v1(tmp_path: Path, quota: str, expected: float | None) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", quota)
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(tmp_path) == expected


def test_a_small_limit_still_gives_one_thread(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "20000 100000\n")
    assert available_cpus(tmp_path) == 1


def test_no_cgroup_files(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))

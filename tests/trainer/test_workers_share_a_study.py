"""Several trainer processes share one run's studies in a real PostgreSQL server.

Three ``python -m tjtrainer train --workers 3`` processes, as the pods of an Indexed Job
run them, on one run folder and one database: exactly nTrials finished trials per model,
one model version saved; a worker SIGKILLed mid-trial has its trial failed (its heartbeat
stops) and re-run with the same parameters, none lost, none extra.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from trainer_testlib import make_config

from tjdevcluster.postgres import PostgresServer
from tjtrainer.progress import MODELS, RunState, read_progress, request_cancel
from tjtrainer.shared_studies import study_prefix
from tjtrainer.train import run_training
from tjtrainer.versions import VERSION_NAME
from tjtrainer.warmstart import WARM_TRIALS

N_TRIALS = 4
WORKERS = 3


def worker_command(
    data_root: Path, run_dir: Path, index: int, url: str, n_trials: int = N_TRIALS, *extra: str
) -> list[str]:
    return [
        sys.executable, "-m", "tjtrainer", "train", "--timeframe", "15m",
        "--n-trials", str(n_trials), "--seed", "5", "--parallelism", "1",
        "--run-dir", str(run_dir), "--data-root", str(data_root),
        "--workers", str(WORKERS), "--worker-index", str(index), *extra,
    ]  # fmt: skip


class Worker:
    """One trainer process; its output is collected line by line on a thread."""

    def __init__(
        self,
        data_root: Path,
        run_dir: Path,
        index: int,
        url: str,
        n_trials: int = N_TRIALS,
        *extra: str,
    ) -> None:
        env = dict(os.environ, TJ_STUDY_STORAGE_URL=url)  # the URL never on a command line
        self.process = subprocess.Popen(
            worker_command(data_root, run_dir, index, url, n_trials, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def start_workers(
    data_root: Path, run_dir: Path, url: str, n_trials: int = N_TRIALS, *extra: str
) -> list[Worker]:
    return [Worker(data_root, run_dir, i, url, n_trials, *extra) for i in range(WORKERS)]


def studies(url: str, run_dir: Path) -> dict[str, list[FrozenTrial]]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return {
            model: optuna.load_study(
                study_name=f"{study_prefix(run_dir)}:{model}", storage=storage
            ).get_trials(deepcopy=False)
            for model in MODELS
        }
    finally:
        storage.engine.dispose()


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.wait()


def test_three_workers_finish_exactly_n_trials_per_model_and_save_once(
    data_root: Path, postgres_url: str
) -> None:
    run_dir = data_root / "runs" / "default" / "shared"
    workers = start_workers(data_root, run_dir, postgres_url)
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        stop_all(workers)
    assert codes == [0, 0, 0], "\n---\n".join(w.output for w in workers)
    trials = studies(postgres_url, run_dir)
    for model in MODELS:
        assert len(finished(trials[model])) == N_TRIALS, model
        assert not [t for t in trials[model] if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    assert progress.completed_trials == 2 * N_TRIALS
    assert [r.trial for r in progress.trials if r.state != "failed"] == list(
        range(1, 2 * N_TRIALS + 1)
    )
    versions = [p.name for p in (data_root / "models").iterdir() if VERSION_NAME.fullmatch(p.name)]
    assert versions == [progress.model_version]
    # The work was shared: more than one process ran trials.
    ran = [w for w in workers if "trial #" in w.output and " started" in w.output]
    assert len(ran) >= 2, [w.output for w in workers]
    assert not [w for w in workers if "Warning" in w.output], [w.output for w in workers]
    # Nobody logged the password.
    password = postgres_url.split(":")[2].split("@")[0]
    assert all(password not in w.output for w in workers)


def test_a_worker_killed_mid_trial_has_its_trial_rerun_none_lost_none_extra(
    data_root: Path, postgres_url: str
) -> None:
    run_dir = data_root / "runs" / "default" / "killed"
    workers = start_workers(data_root, run_dir, postgres_url)
    try:
        deadline = time.monotonic() + 180
        # The first of workers 1 and 2 seen in a trial (on a busy machine one of them may
        # start after the others took every slot).
        while not (victims := [w for w in workers[1:] if " started" in w.output]):
            if time.monotonic() > deadline or all(w.process.poll() is not None for w in workers):
                pytest.fail("no worker but 0 started a trial:\n" + workers[1].output)
            time.sleep(0.01)
        victim = victims[0]
        victim.process.send_signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        codes = [worker.wait() for worker in workers if worker is not victim]
    finally:
        stop_all(workers)
    assert codes == [0, 0], "\n---\n".join(w.output for w in workers)
    trials = studies(postgres_url, run_dir)
    killed = [t for model in MODELS for t in trials[model] if t.state == TrialState.FAIL]
    assert len(killed) == 1, killed
    assert "error" not in killed[0].user_attrs  # failed for its heartbeat, not an error
    model = next(m for m in MODELS if killed[0] in trials[m])
    retries = [t for t in trials[model] if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == killed[0].params
    assert retries[0].user_attrs["slot"] == killed[0].user_attrs["slot"]
    for name in MODELS:
        assert len(finished(trials[name])) == N_TRIALS, name
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    assert progress.completed_trials == 2 * N_TRIALS


def test_a_cancel_stops_every_worker_after_its_trial_and_saves_nothing(
    data_root: Path, postgres_url: str
) -> None:
    run_dir = data_root / "runs" / "default" / "cancelled"
    workers = start_workers(data_root, run_dir, postgres_url, n_trials=40)  # not all done
    try:
        deadline = time.monotonic() + 180
        while (progress := read_progress(run_dir)) is None or progress.completed_trials < 1:
            if time.monotonic() > deadline or workers[0].process.poll() is not None:
                pytest.fail(f"no trial finished:\n{workers[0].output}")
            time.sleep(0.01)
        request_cancel(run_dir)
        codes = [worker.wait() for worker in workers]
    finally:
        stop_all(workers)
    assert codes == [0, 0, 0], "\n---\n".join(w.output for w in workers)
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.CANCELLED
    trials = studies(postgres_url, run_dir)
    assert not [t for m in MODELS for t in trials[m] if t.state == TrialState.RUNNING]
    assert progress.completed_trials == sum(len(finished(trials[m])) for m in MODELS)
    assert progress.completed_trials < 2 * 40
    assert not (data_root / "models").exists() or not [
        p for p in (data_root / "models").iterdir() if VERSION_NAME.fullmatch(p.name)
    ]


def run_one(
    data_root: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = worker_command(data_root, data_root / "runs" / "default" / "one", 0, "")
    return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=120, env=env)


def test_several_workers_on_sqlite_are_refused_saying_postgresql_is_needed(
    data_root: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TJ_STUDY_STORAGE_URL"}
    result = run_one(data_root, env=env)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: workers 3 need the studies in PostgreSQL")
    assert "database.url" in last and "Traceback" not in result.stderr


def test_an_unreachable_study_database_names_the_host_never_the_password(
    data_root: Path,
) -> None:
    url = "postgresql+psycopg://tj:s3cret-pw@127.0.0.1:1/tj"
    env = dict(os.environ, TJ_STUDY_STORAGE_URL=url)
    result = run_one(data_root, env=env)
    assert result.returncode == 75, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot use the study database on 127.0.0.1"), last
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_worker_0_killed_and_started_again_resumes_and_saves_once(
    data_root: Path, postgres_url: str
) -> None:
    run_dir = data_root / "runs" / "default" / "leader"
    workers = start_workers(data_root, run_dir, postgres_url)
    leader = workers[0]
    try:
        deadline = time.monotonic() + 180
        while (progress := read_progress(run_dir)) is None or progress.completed_trials < 1:
            if time.monotonic() > deadline or leader.process.poll() is not None:
                pytest.fail(f"worker 0 wrote no trial:\n{leader.output}")
            time.sleep(0.01)
        leader.process.send_signal(signal.SIGKILL)
        leader.wait()
        kept = read_progress(run_dir)
        assert kept is not None
        again = Worker(data_root, run_dir, 0, postgres_url)  # as the Job makes a new pod 0
        workers.append(again)
        codes = [w.wait() for w in (*workers[1:3], again)]
    finally:
        stop_all(workers)
    assert codes == [0, 0, 0], "\n---\n".join(w.output for w in workers)
    assert "resuming with" in again.output
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    assert progress.completed_trials == 2 * N_TRIALS >= kept.completed_trials
    trials = studies(postgres_url, run_dir)
    for model in MODELS:
        assert len(finished(trials[model])) == N_TRIALS, model
    versions = [p.name for p in (data_root / "models").iterdir() if VERSION_NAME.fullmatch(p.name)]
    assert versions == [progress.model_version]


def test_a_warm_start_gives_the_first_slots_the_earlier_versions_best(
    data_root: Path, postgres_url: str
) -> None:
    first = run_training(make_config(data_root, "first", n_trials=6))
    version = str(first.model_version)
    metadata = json.loads((data_root / "models" / version / "metadata.json").read_text())
    run_dir = data_root / "runs" / "default" / "warm"
    workers = start_workers(data_root, run_dir, postgres_url, 6, "--warm-start", version)
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        stop_all(workers)
    assert codes == [0, 0, 0], "\n---\n".join(w.output for w in workers)
    trials = studies(postgres_url, run_dir)
    for model in MODELS:
        best = metadata["models"][model]["top_params"]
        by_slot = sorted(finished(trials[model]), key=lambda t: t.user_attrs["slot"])
        assert len(best) == WARM_TRIALS and len(by_slot) == 6
        assert [dict(t.params) for t in by_slot[:WARM_TRIALS]] == best, model


def test_workers_reconnect_after_the_database_restarts_mid_run(
    data_root: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    run_dir = data_root / "runs" / "default" / "restarted"
    workers = start_workers(data_root, run_dir, postgres_url, 10)
    try:
        deadline = time.monotonic() + 180
        while (progress := read_progress(run_dir)) is None or progress.completed_trials < 2:
            if time.monotonic() > deadline or workers[0].process.poll() is not None:
                pytest.fail(f"no trial finished:\n{workers[0].output}")
            time.sleep(0.01)
        postgres_server.restart()  # every open connection is cut
        codes = [worker.wait() for worker in workers]
        # A worker still opening the studies when the server went away fails at once
        # (exit 75, "cannot use the study database on 127.0.0.1"); the Job makes it a new
        # pod, as here. A worker that was running its trials went on by itself.
        retried = [i for i, code in enumerate(codes) if code == 75]
        assert all("cannot use the study database" in workers[i].output for i in retried)
        again = [Worker(data_root, run_dir, i, postgres_url, 10) for i in retried]
        workers += again
        codes = [0 if c == 75 else c for c in codes] + [w.wait() for w in again]
    finally:
        stop_all(workers)
    assert set(codes) == {0}, "\n---\n".join(w.output for w in workers)
    assert len(retried) < WORKERS and "trying again" in "".join(w.output for w in workers)
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    trials = studies(postgres_url, run_dir)
    for model in MODELS:
        assert len(finished(trials[model])) == 10, model

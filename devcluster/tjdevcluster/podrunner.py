"""Run one pod's containers as local processes and report status as a kubelet does.

Development and test scaffolding for the pod harness (see harness.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .podspec import Launch, LaunchError, Pod, base_environment, build_launch
from .volumes import prepare_volumes, read_data

log = logging.getLogger("tjdevcluster.harness")
MESSAGE_LIMIT = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
RESTART_BACKOFF = 1.0


def now() -> str:
    """RFC 3339 timestamp, as the API stores them."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class HarnessContext:
    """What every pod runner needs from the harness."""

    core: client.CoreV1Api
    node_name: str
    volumes_root: Path
    pods_dir: Path
    logs_dir: Path
    server: str
    api_port: int
    ca_file: Path


@dataclass
class Container:
    """One running (or finished) container process."""

    launch: Launch
    image: str
    log_file: Path
    pid_file: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    last_state: dict[str, Any] = field(default_factory=dict)
    terminated: dict[str, Any] | None = None

    def status(self) -> dict[str, Any]:
        if self.terminated is not None:
            state: dict[str, Any] = {"terminated": self.terminated}
        elif self.proc is not None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        return {
            "name": self.launch.name,
            "image": self.image,
            "imageID": "",
            "containerID": f"tjharness://{self.proc.pid if self.proc else 0}",
            "ready": self.terminated is None and self.proc is not None,
            "started": self.terminated is None and self.proc is not None,
            "restartCount": self.restarts,
            "state": state,
            "lastState": self.last_state,
        }


def exit_code(returncode: int) -> int:
    """Shell-style exit code: a signal N becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def termination_message(c: Container, code: int) -> str:
    """The file's content, or (FallbackToLogsOnError, failed) the log's tail."""
    text = ""
    if c.launch.termination_file.exists():
        text = c.launch.termination_file.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace")
    if not text.strip() and c.launch.fallback_to_logs and code != 0 and c.log_file.exists():
        raw = c.log_file.read_bytes()[-FALLBACK_BYTES:].decode(errors="replace")
        text = "\n".join(raw.splitlines()[-FALLBACK_LINES:])
    return text


class PodRunner(threading.Thread):
    """Runs one pod to completion (or until it is deleted)."""

    def __init__(self, ctx: HarnessContext, pod: Pod) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx, self.pod = ctx, pod
        self.ns, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.pod_dir = ctx.pods_dir / self.ns / f"{self.pod_name}-{self.uid[:8]}"
        self.log_dir = ctx.logs_dir / self.ns / f"{self.pod_name}-{self.uid[:8]}"
        self.restart_policy = pod["spec"].get("restartPolicy") or "Always"
        self.containers: list[Container] = []
        self.grace = 30.0
        self.terminating = threading.Event()
        self.finished = threading.Event()
        self.start_time = now()

    # -- called from the watch thread ------------------------------------------------------
    def request_termination(self, grace: float) -> None:
        """Stop the pod: SIGTERM now, SIGKILL after grace seconds."""
        self.grace = grace
        self.terminating.set()

    # -- the pod's life -------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # keep the harness alive, fail the pod
            log.exception("pod %s/%s: harness error", self.ns, self.pod_name)
            self._finish_failed("HarnessError", f"pod harness error: {exc}")
        finally:
            self._kill_all()
            self.finished.set()
        if self.terminating.is_set():
            self._delete_now()

    def _run(self) -> None:
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        (self.pod_dir / "work").mkdir(exist_ok=True)
        (self.pod_dir / "home").mkdir(exist_ok=True)
        try:
            kubeconfigs = prepare_volumes(
                self.ctx.core,
                self.pod,
                self.ctx.volumes_root,
                self.pod_dir,
                self.ctx.server,
                self.ctx.ca_file,
                self.ctx.node_name,
            )
            init = [
                self._container(c, kubeconfigs)
                for c in self.pod["spec"].get("initContainers") or []
            ]
            main = [self._container(c, kubeconfigs) for c in self.pod["spec"]["containers"]]
        except LaunchError as exc:
            self._finish_failed("StartError", str(exc))
            return
        if self.terminating.is_set():
            self._finish_failed("Terminated", "pod deleted before its containers started")
            return
        for c in init:
            self.containers = [c]
            self._run_group([c], init=True)
            if c.terminated is None or c.terminated["exitCode"] != 0 or self.terminating.is_set():
                self._report_final(init_statuses=[c.status()], main=main)
                return
        self.containers = main
        self._run_group(main, init=False)
        self._report_final(init_statuses=[c.status() for c in init], main=main)

    def _container(self, spec: dict[str, Any], kubeconfigs: dict[str, Path]) -> Container:
        base = base_environment(self.pod, self.ctx.api_port, self.pod_dir / "home")

        def lookup(kind: str, ns: str, name: str) -> dict[str, str] | None:
            data = read_data(self.ctx.core, kind, ns, name)
            return None if data is None else {k: v.decode() for k, v in data.items()}

        launch = build_launch(
            self.pod, spec, self.ctx.volumes_root, self.pod_dir, lookup, base, self.ctx.node_name
        )
        for mount in spec.get("volumeMounts") or []:
            if mount["name"] in kubeconfigs:
                launch.env.setdefault("KUBECONFIG", str(kubeconfigs[mount["name"]]))
        return Container(
            launch=launch,
            image=spec.get("image") or "none",
            log_file=self.log_dir / f"{launch.name}.log",
            pid_file=self.pod_dir / f"{launch.name}.pid",
        )

    def _start(self, c: Container) -> None:
        from . import procs

        c.log_file.parent.mkdir(parents=True, exist_ok=True)
        c.launch.cwd.mkdir(parents=True, exist_ok=True)
        c.launch.termination_file.write_bytes(b"")
        with open(c.log_file, "ab") as out:
            c.proc = subprocess.Popen(
                c.launch.argv,
                cwd=c.launch.cwd,
                env=c.launch.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        c.pid_file.write_text(f"{c.proc.pid} {procs.psutil.Process(c.proc.pid).create_time()}\n")
        c.started_at, c.terminated = now(), None

    def _run_group(self, group: list[Container], init: bool) -> None:
        try:
            for c in group:
                self._start(c)
        except OSError as exc:
            for c in group:
                if c.proc is None:
                    c.terminated = self._terminated(c, 128, "StartError", str(exc))
        self._report("Pending" if init else "Running")
        kill_at: float | None = None
        while True:
            changed = False
            for c in group:
                if c.proc is None or c.terminated is not None:
                    continue
                rc = c.proc.poll()
                if rc is None:
                    continue
                code = exit_code(rc)
                reason = "Completed" if code == 0 else "Error"
                c.terminated = self._terminated(c, code, reason, termination_message(c, code))
                c.pid_file.unlink(missing_ok=True)
                changed = True
                if self._should_restart(code) and not self.terminating.is_set():
                    c.last_state, c.terminated = {"terminated": c.terminated}, None
                    c.restarts += 1
                    time.sleep(RESTART_BACKOFF)
                    self._start(c)
            if all(c.terminated is not None for c in group):
                return
            if changed:
                self._report("Pending" if init else "Running")
            if self.terminating.is_set():
                if kill_at is None:
                    kill_at = time.monotonic() + self.grace
                    self._signal(group, signal.SIGTERM)
                elif time.monotonic() >= kill_at:
                    self._signal(group, signal.SIGKILL)
            time.sleep(0.05)

    def _should_restart(self, code: int) -> bool:
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)

    def _terminated(self, c: Container, code: int, reason: str, message: str) -> dict[str, Any]:
        out = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at or now(),
            "finishedAt": now(),
            "containerID": f"tjharness://{c.proc.pid if c.proc else 0}",
        }
        if message:
            out["message"] = message
        return out

    def _signal(self, group: list[Container], sig: int) -> None:
        from .procs import signal_group

        for c in group:
            if c.proc is not None and c.terminated is None and c.proc.poll() is None:
                signal_group(c.proc.pid, sig)

    def _kill_all(self) -> None:
        from .procs import signal_group

        for c in self.containers:
            if c.proc is not None and c.proc.poll() is None:
                signal_group(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
            c.pid_file.unlink(missing_ok=True)

    # -- status -----------------------------------------------------------------------------
    def _conditions(self, ready: bool, initialized: bool, reason: str = "") -> list[dict[str, Any]]:
        t = now()
        out = []
        for kind, value in (
            ("PodReadyToStartContainers", True),
            ("Initialized", initialized),
            ("ContainersReady", ready),
            ("Ready", ready),
        ):
            cond: dict[str, Any] = {"type": kind, "status": str(value), "lastTransitionTime": t}
            if not value and reason and kind in ("Ready", "ContainersReady"):
                cond["reason"] = reason
            out.append(cond)
        return out

    def _patch(self, status: dict[str, Any]) -> None:
        status.update(
            {
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": self.start_time,
            }
        )
        try:
            self.ctx.core.patch_namespaced_pod_status(self.pod_name, self.ns, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("pod %s/%s: status update failed: %s", self.ns, self.pod_name, exc)

    def _report(self, phase: str) -> None:
        statuses = [c.status() for c in self.containers]
        ready = phase == "Running" and all(s["ready"] for s in statuses)
        key = "initContainerStatuses" if phase == "Pending" else "containerStatuses"
        self._patch(
            {
                "phase": phase,
                key: statuses,
                "conditions": self._conditions(ready, phase != "Pending"),
            }
        )

    def _report_final(self, init_statuses: list[dict[str, Any]], main: list[Container]) -> None:
        codes = [c.terminated["exitCode"] for c in main if c.terminated is not None]
        init_ok = all(s["state"].get("terminated", {}).get("exitCode") == 0 for s in init_statuses)
        ok = init_ok and len(codes) == len(main) and all(code == 0 for code in codes)
        waiting = {"waiting": {"reason": "PodInitializing"}}  # main never started
        statuses = [c.status() if c.proc else {**c.status(), "state": waiting} for c in main]
        status: dict[str, Any] = {
            "phase": "Succeeded" if ok else "Failed",
            "containerStatuses": statuses,
            "conditions": self._conditions(False, init_ok, "PodCompleted" if ok else "PodFailed"),
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        self._patch(status)

    def _finish_failed(self, reason: str, message: str) -> None:
        log.warning("pod %s/%s failed: %s", self.ns, self.pod_name, message)
        statuses = []
        for spec in self.pod["spec"]["containers"]:
            terminated = {
                "exitCode": 128,
                "reason": reason,
                "message": message,
                "startedAt": now(),
                "finishedAt": now(),
            }
            statuses.append(
                {
                    "name": spec["name"],
                    "image": spec.get("image") or "none",
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            )
        self._patch(
            {
                "phase": "Failed",
                "reason": reason,
                "message": message,
                "containerStatuses": statuses,
                "conditions": self._conditions(False, True, "PodFailed"),
            }
        )

    def _delete_now(self) -> None:
        delete_pod_now(self.ctx.core, self.ns, self.pod_name, self.uid)

    def cleanup(self) -> None:
        """Remove the pod's own folders (emptyDir, configMap, ...); logs are kept."""
        shutil.rmtree(self.pod_dir, ignore_errors=True)


def delete_pod_now(core: client.CoreV1Api, ns: str, name: str, uid: str) -> None:
    """The kubelet's final delete: grace 0, only this incarnation (uid precondition)."""
    body = client.V1DeleteOptions(
        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
    )
    try:
        core.delete_namespaced_pod(name, ns, body=body, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status not in (404, 409):
            log.warning("pod %s/%s: delete failed: %s", ns, name, exc)

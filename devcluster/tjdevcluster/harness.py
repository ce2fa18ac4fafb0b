"""The pod harness: a stand-in kubelet (and scheduler) for the local control plane.

Development and test scaffolding, never a way to run production work. It registers one
Ready Node (kept Ready by a Lease heartbeat), binds every pending pod to it, runs each
container as a local process (see podspec.py for the rules) and reports pod status as
a kubelet does. Run as ``python -m tjdevcluster.harness --kubeconfig ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from .podrunner import HarnessContext, PodRunner, delete_pod_now, now
from .podspec import Pod
from .procs import signal_group

log = logging.getLogger("tjdevcluster.harness")
LEASE_SECONDS, LEASE_RENEW, NODE_STATUS_EVERY = 40, 10.0, 60.0


class Harness:
    """Registers the node and reacts to pod events."""

    def __init__(self, ctx: HarnessContext, api: client.ApiClient, log_port: int = 0) -> None:
        self.ctx, self.api, self.log_port = ctx, api, log_port
        self.core = ctx.core
        self.runners: dict[str, PodRunner] = {}
        self.deleted: set[str] = set()
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    # -- node -------------------------------------------------------------------------------
    def node_status(self) -> dict[str, Any]:
        version = client.VersionApi(self.api).get_code().git_version
        resources = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{psutil.virtual_memory().total // 1024}Ki",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        t = now()
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHasSufficient{kind[:-8]}",
                "lastHeartbeatTime": t,
                "lastTransitionTime": t,
            }
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "tjdevcluster pod harness is posting ready status",
                "lastHeartbeatTime": t,
                "lastTransitionTime": t,
            }
        )
        uname = platform.uname()
        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.ctx.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {
                "machineID": "tjdevcluster",
                "systemUUID": "tjdevcluster",
                "bootID": "tjdevcluster",
                "kernelVersion": uname.release,
                "osImage": "tjdevcluster pod harness",
                "containerRuntimeVersion": "tjharness://0.1",
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register_node(self) -> None:
        name = self.ctx.node_name
        body = {
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "tjdevcluster/harness": "true",
                },
            }
        }
        try:
            self.core.create_node(body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(name, {"status": self.node_status()})
        # The node lifecycle controller (not run here) would lift this taint once Ready.
        node: Any = self.core.read_node(name)
        taints = [t for t in node.spec.taints or [] if t.key != "node.kubernetes.io/not-ready"]
        if len(taints) != len(node.spec.taints or []):
            self.core.patch_node(name, {"spec": {"taints": taints or None}})
        log.info("node %s registered and Ready", name)

    def heartbeat(self) -> None:
        """Renew the node Lease every 10 s and the Ready condition every 60 s."""
        coord = client.CoordinationV1Api(self.api)
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_RENEW):
            try:
                self._renew_lease(coord)
                if time.monotonic() - last_status >= NODE_STATUS_EVERY:
                    self.core.patch_node_status(self.ctx.node_name, {"status": self.node_status()})
                    last_status = time.monotonic()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    def _renew_lease(self, coord: client.CoordinationV1Api) -> None:
        name = self.ctx.node_name
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": stamp}
        try:
            coord.patch_namespaced_lease(name, "kube-node-lease", {"spec": spec})
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Created without renewTime (the typed client mangles MicroTime), then patched.
            lease = {"metadata": {"name": name}, "spec": {"holderIdentity": name}}
            coord.create_namespaced_lease("kube-node-lease", lease)  # type: ignore[arg-type]
            coord.patch_namespaced_lease(name, "kube-node-lease", {"spec": spec})

    # -- pods -------------------------------------------------------------------------------
    def bind(self, pod: Pod) -> None:
        meta = pod["metadata"]
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=meta["name"], uid=meta["uid"]),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.ctx.node_name),
        )
        try:
            self.core.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("bind %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    def handle(self, kind: str, pod: Pod) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        if kind == "DELETED":
            self._forget(uid)
            return
        node = spec.get("nodeName")
        if not node:
            if not meta.get("deletionTimestamp"):
                self.bind(pod)
            return
        if node != self.ctx.node_name:
            return
        runner = self.runners.get(uid)
        if meta.get("deletionTimestamp"):
            if runner is not None and not runner.finished.is_set():
                runner.request_termination(float(meta.get("deletionGracePeriodSeconds") or 0))
            if (runner is None or runner.finished.is_set()) and uid not in self.deleted:
                self.deleted.add(uid)
                delete_pod_now(self.core, meta["namespace"], meta["name"], uid)
            return
        phase = pod.get("status", {}).get("phase")
        if runner is None and phase not in ("Succeeded", "Failed"):
            if pod.get("status", {}).get("startTime") and uid not in self.runners:
                self._orphaned(pod)
                return
            runner = PodRunner(self.ctx, pod)
            self.runners[uid] = runner
            runner.start()

    def _orphaned(self, pod: Pod) -> None:
        """A pod started by an earlier harness whose process is gone: mark it Failed."""
        meta = pod["metadata"]
        body = {
            "status": {
                "phase": "Failed",
                "reason": "HarnessRestarted",
                "message": "the pod harness restarted; its process was lost",
            }
        }
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
        except ApiException as exc:
            log.warning("could not fail orphaned pod %s: %s", meta["name"], exc)

    def _forget(self, uid: str) -> None:
        runner = self.runners.pop(uid, None)
        self.deleted.discard(uid)
        if runner is None:
            return
        runner.request_termination(0)

        def cleanup() -> None:
            runner.finished.wait(60)
            runner.cleanup()

        threading.Thread(target=cleanup, daemon=True).start()

    def watch_pods(self) -> None:
        """List, then watch all pods; relist on expiry or error."""
        while not self.stopping.is_set():
            try:
                resp: Any = self.core.list_pod_for_all_namespaces(_preload_content=False)
                listing = json.loads(resp.data)
                for pod in listing["items"]:
                    self.handle("ADDED", pod)
                rv = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=120,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                )
                for event in stream:
                    obj = event.get("raw_object") or event["object"]
                    if event["type"] == "ERROR":
                        break
                    if event["type"] != "BOOKMARK":
                        self.handle(event["type"], obj)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log.warning("pod watch interrupted (%s); relisting", exc)
                time.sleep(0.5)

    def kill_all(self) -> None:
        """Stop every pod process at once (harness shutdown)."""
        for runner in list(self.runners.values()):
            for c in runner.containers:
                if c.proc is not None and c.proc.poll() is None:
                    signal_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for runner in list(self.runners.values()):
            for c in runner.containers:
                if c.proc is None:
                    continue
                try:
                    c.proc.wait(max(0.0, deadline - time.monotonic()))
                except Exception:
                    signal_group(c.proc.pid, signal.SIGKILL)
                c.pid_file.unlink(missing_ok=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tjdevcluster.harness", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--node-name", default="tj-dev-node")
    parser.add_argument("--volumes-root", required=True, type=Path)
    parser.add_argument("--pods-dir", required=True, type=Path)
    parser.add_argument("--pki-dir", required=True, type=Path)
    parser.add_argument("--logs-dir", type=Path, help="default: <pods-dir>/../logs/pods")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the harness until SIGTERM/SIGINT."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
    )
    api = config.new_client_from_config(config_file=str(args.kubeconfig))
    api.configuration.connection_pool_maxsize = 32
    server = api.configuration.host
    ctx = HarnessContext(
        core=client.CoreV1Api(api),
        node_name=args.node_name,
        volumes_root=args.volumes_root.resolve(),
        pods_dir=args.pods_dir.resolve(),
        logs_dir=(args.logs_dir or args.pods_dir.parent / "logs" / "pods").resolve(),
        server=server,
        api_port=int(server.rsplit(":", 1)[1]),
        ca_file=args.pki_dir / "ca.crt",
    )
    for folder in (ctx.volumes_root / "pvc", ctx.pods_dir, ctx.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    from .logserver import start_log_server

    log_port = start_log_server(ctx, args.pki_dir)
    harness = Harness(ctx, api, log_port)

    def stop(signum: int, _frame: object) -> None:
        harness.stopping.set()
        harness.kill_all()
        log.info("harness stopped (signal %d)", signum)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    harness.register_node()
    threading.Thread(target=harness.heartbeat, name="heartbeat", daemon=True).start()
    harness.watch_pods()
    return 0


if __name__ == "__main__":
    sys.exit(main())

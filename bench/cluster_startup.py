"""How fast is the local control plane? (targets: start-up < 20 s, Job round trip < 5 s)

1. ``tjctl dev-cluster up`` (warm tool cache) until the API server answers /readyz, and
   until ``up`` returns (node Ready, controllers running);
2. ``kubectl apply`` of a Job whose pod sleeps one second, until the Job is Complete.

It uses its own state dir and free ports, so it never touches a user's dev cluster, and
runs ``dev-cluster down`` at the end. Usage: ``python bench/cluster_startup.py [--jobs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tjdevcluster.procs import free_ports
from tjdevcluster.tools import ensure_tools

JOB = """apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: ignored
        command: ["python", "-c", "import time; time.sleep(1)"]
"""


def readyz(state: Path, port: int) -> bool:
    pki = state / "pki"
    try:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        url = f"https://127.0.0.1:{port}/readyz"
        with urllib.request.urlopen(url, context=ctx, timeout=1) as resp:
            return bool(resp.status == 200)
    except (OSError, ssl.SSLError):
        return False


def dev_cluster(*args: str) -> list[str]:
    tjctl = Path(sys.executable).parent / "tjctl"
    if tjctl.exists():
        return [str(tjctl), "dev-cluster", *args]
    return [sys.executable, "-m", "tjdevcluster", "dev-cluster", *args]


def measure_startup(state: Path) -> tuple[float, float]:
    api, etcd, peer = free_ports(3)
    argv = dev_cluster(
        "up", f"--state-dir={state}", f"--apiserver-port={api}",
        f"--etcd-port={etcd}", f"--etcd-peer-port={peer}",
    )  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    api_ready = None
    while proc.poll() is None:
        if api_ready is None and readyz(state, api):
            api_ready = time.monotonic() - start
        time.sleep(0.05)
    up_done = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"dev-cluster up failed:\n{proc.stderr.read() if proc.stderr else ''}")
    return api_ready or up_done, up_done


def measure_job(kubectl: Path, kubeconfig: Path, name: str) -> float:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    start = time.monotonic()
    subprocess.run([str(kubectl), "apply", "-f", "-"], input=JOB.format(name=name),
                   env=env, check=True, capture_output=True, text=True)  # fmt: skip
    while time.monotonic() - start < 60:
        out = subprocess.run([str(kubectl), "get", "job", name, "-o", "json"],
                             env=env, check=True, capture_output=True, text=True)  # fmt: skip
        conds = json.loads(out.stdout).get("status", {}).get("conditions") or []
        if any(c["type"] == "Complete" and c["status"] == "True" for c in conds):
            return time.monotonic() - start
        if any(c["type"] == "Failed" and c["status"] == "True" for c in conds):
            raise SystemExit(f"job {name} failed: {conds}")
        time.sleep(0.05)
    raise SystemExit(f"job {name} did not complete within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3, help="Job round trips to time")
    args = parser.parse_args()
    tools = ensure_tools(log=lambda m: print(m, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="tj-bench-") as tmp:
        state = Path(tmp) / "cluster"
        try:
            api_ready, up_done = measure_startup(state)
            print(f"dev-cluster up -> API server ready:        {api_ready:6.2f} s  (target < 20 s)")
            print(f"dev-cluster up -> returned (node + ctrl):  {up_done:6.2f} s")
            times = [
                measure_job(tools.kubectl, state / "kubeconfig", f"bench-{i}")
                for i in range(args.jobs)
            ]
            listed = ", ".join(f"{t:.2f}" for t in times)
            print(
                f"kubectl apply 1 s Job -> Complete:         {statistics.median(times):6.2f} s "
                f"median of {len(times)} ({listed})  (target < 5 s)"
            )
        finally:
            subprocess.run(dev_cluster("down", f"--state-dir={state}"), capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

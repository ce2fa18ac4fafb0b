"""A real Kueue controller (built from its Go module by tjdevcluster.tools) against the
test control plane: its CRDs applied, the manager run as a local process on loopback.

What differs from a Kueue installed by its chart, and why:
- No webhooks are registered with the API server (it could not reach a local process as
  a Service). Kueue's Job webhook only sets ``suspend: true`` on a queued Job, which the
  operator does itself; everything the tests rely on (Workloads, admission, preemption,
  eviction, unsuspending) is Kueue's controller and scheduler, which run unchanged.
- Kueue's own certificate management is off (it needs those webhook objects); the
  webhook server gets a self-signed pair in a temp folder, and the metrics server, whose
  certificate path is fixed at /etc/kueue/metrics/certs, gets one through an overlay on
  /etc in a private mount namespace of the Kueue process only (the host's /etc is never
  written; the mount goes with the process).
- The on-demand visibility API (an aggregated API server) is turned off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tjdevcluster.procs import free_ports
from tjdevcluster.testing import Cluster, wait_for
from tjdevcluster.tools import ensure_tools

NAMESPACE = "kueue-system"
METRICS_CERTS = "kueue/metrics/certs"  # /etc/kueue/metrics/certs: under the upper folder of /etc


def _self_signed(folder: Path) -> None:
    """``tls.crt`` and ``tls.key`` for localhost in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _configuration(folder: Path, health: int, metrics: int, webhook: int) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics}"},
        "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(folder / "webhook")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
    }


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_kueue(cluster: Cluster, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Kueue's CRDs applied and its manager running until the block ends."""
    tools = ensure_tools(log=lambda message: print(message, flush=True))
    cluster.kubectl("apply", "--server-side", "-f", str(tools.kueue_crds()))
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    for crd in ("workloads", "clusterqueues", "localqueues", "resourceflavors"):
        path = '{.status.conditions[?(@.type=="Established")].status}'

        def established(crd: str = crd, path: str = path) -> bool:
            found = cluster.kubectl(
                "get", f"crd/{crd}.kueue.x-k8s.io", "-o", f"jsonpath={path}", check=False
            )
            return found.stdout.strip() == "True"

        wait_for(established, 60, f"Kueue's {crd} CRD")
    _self_signed(folder / "webhook")
    upper, work = folder / "overlay" / "upper", folder / "overlay" / "work"
    _self_signed(upper / METRICS_CERTS)
    work.mkdir(parents=True)
    health, metrics, webhook = free_ports(3)
    config = folder / "kueue-config.yaml"
    config.write_text(yaml.safe_dump(_configuration(folder, health, metrics, webhook)))
    log = (folder / "kueue.log").open("wb")
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && "
        f'exec "$0" --config={config} --feature-gates=VisibilityOnDemand=false'
    )
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(tools.kueue)],
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not _ready(health):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "kueue.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kueue did not become ready:\n{tail}")
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()

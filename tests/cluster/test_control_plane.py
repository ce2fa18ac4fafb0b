"""The control plane and the pod harness are real: the Job controller, the garbage
collector, RBAC and signals all act as in a cluster."""

from __future__ import annotations

import json
import textwrap

import yaml

from tjdevcluster.testing import Cluster, wait_for


def job_manifest(
    name: str, code: str, backoff_limit: int = 0, volumes: list[dict] | None = None
) -> str:
    """A batch/v1 Job running ``python -c code`` (restartPolicy Never)."""
    container: dict = {"name": "main", "image": "ignored", "command": ["python", "-c", code]}
    pod_spec: dict = {"restartPolicy": "Never", "containers": [container]}
    if volumes:
        pod_spec["volumes"] = volumes
        container["volumeMounts"] = [{"name": v["name"], "mountPath": "/data"} for v in volumes]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}},
    }
    return yaml.safe_dump(job)


def pods_of(cluster: Cluster, namespace: str, job: str) -> list[dict]:
    return cluster.get_json("pods", "-n", namespace, "-l", f"job-name={job}")["items"]


def test_server_reports_pinned_version(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == cluster.tools.kubernetes_version
    client_minor = int(out["clientVersion"]["minor"].rstrip("+"))
    assert abs(client_minor - int(out["serverVersion"]["minor"])) <= 1


def test_node_is_ready(cluster: Cluster) -> None:
    node = cluster.get_json("node", cluster.node_name)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"


def test_job_completes_through_job_controller(cluster: Cluster, namespace: str) -> None:
    code = "import os; print('hello from', os.environ['HOSTNAME'])"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=job_manifest("hello", code))
    job = cluster.wait_job(namespace, "hello", "Complete")
    assert job["status"]["succeeded"] == 1
    (pod,) = pods_of(cluster, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert f"hello from {pod['metadata']['name']}" in cluster.pod_log(
        namespace, pod["metadata"]["name"]
    )
    logs = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert "hello from" in logs


def test_failing_job_retries_per_backoff_limit(cluster: Cluster, namespace: str) -> None:
    manifest = job_manifest("fails", "import sys; sys.exit(3)", backoff_limit=1)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    job = cluster.wait_job(namespace, "fails", "Failed", timeout=120)
    reasons = {c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"}
    assert reasons == {"BackoffLimitExceeded"}
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", "job-name=fails", "-o", "yaml")
    pods = yaml.safe_load(out.stdout)["items"]
    assert len(pods) == 2  # the first try and one retry
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 3
        assert terminated["reason"] == "Error"


def test_deleting_a_job_deletes_its_pods(cluster: Cluster, namespace: str) -> None:
    manifest = job_manifest("sleeper", "import time; time.sleep(600)")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def running() -> list[dict]:
        pods = pods_of(cluster, namespace, "sleeper")
        return [p for p in pods if p["status"].get("phase") == "Running"]

    wait_for(running, 30, "the sleeper pod to run")
    cluster.kubectl("delete", "job", "sleeper", "-n", namespace, "--wait=false")
    wait_for(lambda: not pods_of(cluster, namespace, "sleeper"), 60, "the garbage collector")


def test_deleting_a_running_pod_sends_sigterm(cluster: Cluster, namespace: str) -> None:
    claim = f"sig-{namespace}"
    folder = cluster.pvc_dir(claim)
    code = textwrap.dedent(
        """
        import os, signal, sys, time
        def stop(signum, frame):
            # Written then renamed, so the test never reads a half-written file.
            with open('/data/got-sigterm.tmp', 'w') as fh:
                fh.write(str(signum))
            os.replace('/data/got-sigterm.tmp', '/data/got-sigterm')
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        open('/data/ready', 'w').close()
        time.sleep(600)
        """
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "graceful"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 20,
            "containers": [
                {
                    "name": "main",
                    "image": "ignored",
                    "command": ["python", "-c", code],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod))
    wait_for(lambda: (folder / "ready").exists(), 30, "the pod's process to start")
    cluster.kubectl("delete", "pod", "graceful", "-n", namespace, "--wait=false")
    wait_for(lambda: (folder / "got-sigterm").exists(), 15, "SIGTERM to reach the process")
    assert (folder / "got-sigterm").read_text() == "15"

    def gone() -> bool:
        res = cluster.kubectl("get", "pod", "graceful", "-n", namespace, check=False)
        return res.returncode != 0 and "NotFound" in res.stderr

    wait_for(gone, 30, "the pod to be removed")


def test_rbac_refuses_a_service_account_without_role(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    who = f"--as=system:serviceaccount:{namespace}:nobody"
    res = cluster.kubectl("auth", "can-i", "create", "jobs", "-n", namespace, who, check=False)
    assert res.returncode != 0 and res.stdout.strip() == "no"
    forbidden = cluster.kubectl("get", "pods", "-n", namespace, who, check=False)
    assert forbidden.returncode != 0 and "Forbidden" in forbidden.stderr
    # RBAC is evaluated, not just everything refused: a Role makes it a yes.
    cluster.kubectl("create", "role", "jobs", "--verb=create", "--resource=jobs", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "jobs", "--role=jobs",
        f"--serviceaccount={namespace}:nobody", "-n", namespace,
    )  # fmt: skip

    def allowed() -> bool:
        res = cluster.kubectl("auth", "can-i", "create", "jobs", "-n", namespace, who, check=False)
        return res.stdout.strip() == "yes"

    wait_for(allowed, 10, "the role binding to apply")

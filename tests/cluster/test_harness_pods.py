"""What the pod harness promises a pod: env, volumes, path rewriting, commands, termination
messages, its ServiceAccount's identity; and the API server's PodSecurity admission."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import yaml

from tjdevcluster.testing import Cluster, wait_for


def pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "ignored", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def finished(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def phase() -> dict[str, Any] | None:
        obj = cluster.get_json("pod", name, "-n", namespace)
        done = obj["status"].get("phase") in ("Succeeded", "Failed")
        return obj if done else None

    return wait_for(phase, 30, f"pod {namespace}/{name} to finish")


def terminated(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["status"]["containerStatuses"][0]["state"]["terminated"])


def test_env_volumes_and_path_rewriting(cluster: Cluster, namespace: str) -> None:
    claim = f"env-{namespace}"
    code = textwrap.dedent(
        """
        import json, os, sys
        report = {
            "pod": os.environ["POD_NAME"], "ns": os.environ["POD_NAMESPACE"],
            "cwd": os.getcwd(), "arg": sys.argv[1], "greeting": os.environ["GREETING"],
            "setting": open("/etc/app/setting").read(),
            "inherited": "PYTHONPATH" in os.environ, "kubeconfig": os.environ["KUBECONFIG"],
        }
        open(os.environ["OUT"], "w").write(json.dumps(report))
        """
    )
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app"},
        "data": {"setting": "on", "greeting": "hello"},
    }
    manifest = pod(
        "env",
        ["python", "-c", code.replace("/etc/app", "$(CFG)"), "/data/arg-path"],
        container={
            "workingDir": "/scratch",
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}},
                },
                {"name": "OUT", "value": "/data/report.json"},
                {"name": "CFG", "value": "/etc/app"},
            ],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "cfg", "mountPath": "/etc/app"},
            ],
        },
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "app"}},
        ],
    )
    apply(cluster, namespace, config_map, manifest)
    obj = finished(cluster, namespace, "env")
    assert obj["status"]["phase"] == "Succeeded", cluster.pod_log(namespace, "env")
    report = json.loads((cluster.pvc_dir(claim) / "report.json").read_text())
    assert report["pod"] == "env" and report["ns"] == namespace
    assert report["arg"] == str(cluster.pvc_dir(claim) / "arg-path")
    assert report["cwd"].endswith("/volumes/emptyDir/scratch")
    assert report["setting"] == "on" and report["greeting"] == "hello"
    assert report["inherited"] is False  # nothing of the harness's own environment
    assert report["kubeconfig"].startswith(str(cluster.state_dir / "pods"))  # the pod's SA


def test_unsupported_command_fails_the_pod_with_a_reason(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, pod("shell", ["bash", "-c", "true"]))
    obj = finished(cluster, namespace, "shell")
    assert obj["status"]["phase"] == "Failed"
    state = terminated(obj)
    assert state["reason"] == "StartError"
    assert "'bash' is not supported" in state["message"]


def test_project_command_runs(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, pod("tjctl", ["tjctl", "--help"]))
    obj = finished(cluster, namespace, "tjctl")
    assert obj["status"]["phase"] == "Succeeded"
    assert "usage" in cluster.pod_log(namespace, "tjctl").lower()


def test_termination_message_file_and_fallback_to_logs(cluster: Cluster, namespace: str) -> None:
    write = "import sys; open(sys.argv[1], 'w').write('boom: bad input'); sys.exit(2)"
    apply(cluster, namespace, pod("file", ["python", "-c", write, "/dev/termination-log"]))
    fallback = pod(
        "fallback",
        ["python", "-c", "import sys; print('first'); print('last words'); sys.exit(1)"],
        container={"terminationMessagePolicy": "FallbackToLogsOnError"},
    )
    apply(cluster, namespace, fallback)
    state = terminated(finished(cluster, namespace, "file"))
    assert (state["exitCode"], state["message"]) == (2, "boom: bad input")
    state = terminated(finished(cluster, namespace, "fallback"))
    assert state["exitCode"] == 1 and state["message"].strip().endswith("last words")


def test_pod_acts_as_its_service_account(cluster: Cluster, namespace: str) -> None:
    code = textwrap.dedent(
        """
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException
        config.load_kube_config()
        core = client.CoreV1Api()
        print("pods", len(core.list_namespaced_pod(open(NS).read()).items))
        try:
            core.list_namespaced_secret(open(NS).read())
        except ApiException as exc:
            print("secrets", exc.status)
        """
    ).replace("NS", "'/var/run/secrets/kubernetes.io/serviceaccount/namespace'")
    apply(
        cluster,
        namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    # The token volume is mounted by the ServiceAccount admission plugin, as in a cluster.
    apply(cluster, namespace, pod("whoami", ["python", "-c", code], serviceAccountName="reader"))
    obj = finished(cluster, namespace, "whoami")
    log = cluster.pod_log(namespace, "whoami")
    assert obj["status"]["phase"] == "Succeeded", log
    assert "pods 1" in log and "secrets 403" in log


def test_restricted_pod_security_is_enforced(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    res = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False,
        input=yaml.safe_dump(pod("loose", ["python", "-c", "pass"])),
    )  # fmt: skip
    assert res.returncode != 0 and "violates PodSecurity" in res.stderr
    strict = pod(
        "strict",
        ["python", "-c", "print('ok')"],
        securityContext={"runAsNonRoot": True, "runAsUser": 1000,
                         "seccompProfile": {"type": "RuntimeDefault"}},
        container={"securityContext": {"allowPrivilegeEscalation": False,
                                       "capabilities": {"drop": ["ALL"]}}},
    )  # fmt: skip
    apply(cluster, namespace, strict)
    assert finished(cluster, namespace, "strict")["status"]["phase"] == "Succeeded"

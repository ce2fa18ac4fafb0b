"""The Helm chart as a user meets it: `helm lint`, `helm install` into a namespace that
enforces the "restricted" Pod Security Standard, `helm upgrade`, `helm uninstall`, and the
operator's RBAC checked with `kubectl auth can-i` against the real API server."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tjcore.store import JobStore
from tjdevcluster.postgres import PostgresServer
from tjdevcluster.procs import free_ports
from tjdevcluster.testing import wait_for
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import labels_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trainingjob-operator"
RELEASE = "tj"
FULLNAME = f"{RELEASE}-trainingjob-operator"
CLAIM = f"{FULLNAME}-shared"
# `helm template` checks Chart.yaml's kubeVersion against this (a helm built by `go install`
# assumes v1.20 without it); `helm install` asks the API server instead.
KUBE = ["--kube-version", "v1.36.3"]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def restrict(cluster: Any, namespace: str) -> None:
    labels = [f"{key}={value}" for key, value in RESTRICTED.items()]
    cluster.kubectl("label", "namespace", namespace, "--overwrite", *labels)


def sets(values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def install(cluster: Any, namespace: str, **values: Any) -> Any:
    return cluster.helm_run(
        "install", RELEASE, str(CHART), "--namespace", namespace, *sets(values), timeout=180
    )


def uninstall(cluster: Any, namespace: str) -> None:
    cluster.helm_run("uninstall", RELEASE, "--namespace", namespace, check=False)


def template(cluster: Any, namespace: str = "tj-ns", **values: Any) -> list[dict[str, Any]]:
    out = cluster.helm_run(
        "template", RELEASE, str(CHART), "--namespace", namespace, *KUBE, *sets(values)
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def manifest_objects(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    out = cluster.helm_run("get", "manifest", RELEASE, "--namespace", namespace).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def can_i(cluster: Any, release_ns: str, *args: str, where: str | None = None) -> bool:
    """`kubectl auth can-i ARGS` as the chart's ServiceAccount, in namespace ``where``."""
    result = cluster.kubectl(
        "auth",
        "can-i",
        *args,
        "--namespace",
        where or release_ns,
        f"--as=system:serviceaccount:{release_ns}:{FULLNAME}",
        check=False,
    )
    return result.stdout.strip() == "yes"


def pods_of(cluster: Any, namespace: str, component: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    return list(cluster.get_json("pods", "-n", namespace, "-l", selector)["items"])


@pytest.fixture
def ports() -> dict[str, int]:
    """Free host ports: the pod harness runs the operator and the UI on this host."""
    health, ui = free_ports(2)
    return {"operator.healthPort": health, "ui.port": ui}


@pytest.fixture
def release(cluster: Any, namespace: str) -> Iterator[str]:
    """A restricted namespace; whatever the test installs there is uninstalled after it."""
    restrict(cluster, namespace)
    yield namespace
    uninstall(cluster, namespace)


# -- the chart's files ----------------------------------------------------------------------


def test_chart_lints_clean_with_default_and_other_values(cluster: Any) -> None:
    for values in (
        {},
        {"watchAllNamespaces": True, "ui.enabled": False},
        {"watchNamespaces": ["a", "b"], "bridge.namespace": "b"},
        {"persistence.hostPath": "/shared-data", "syntheticDataset.enabled": True},
        {"persistence.existingClaim": "mine", "database.existingSecret": "db"},
        {"metrics.enabled": True, "metrics.serviceMonitor.enabled": True},
    ):
        result = cluster.helm_run("lint", "--strict", str(CHART), *sets(values))
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_every_value_has_a_comment_that_starts_with_its_name() -> None:
    """Helm's best practice: lowerCamelCase names, each value documented by a comment that
    starts with its (dotted) name; a group of values needs none, a documented map value's
    own keys (e.g. resources.requests) need none either."""
    path: list[str] = []
    comment = ""
    inside_value: int | None = None  # indentation of a documented map value being skipped
    wrong = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        if line.lstrip().startswith("#"):
            comment = comment or line.strip().lstrip("# ")
            continue
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):(.*)$", line)
        if not match:
            if not line.strip():
                comment = ""
            continue
        indent, key, value = len(match.group(1)), match.group(2), match.group(3).strip()
        if inside_value is not None and indent > inside_value:
            continue
        inside_value = None
        path = [*path[: indent // 2], key]
        name = ".".join(path)
        if not re.fullmatch(r"[a-z][A-Za-z0-9]*", key):
            wrong.append(f"{name}: not lowerCamelCase")
        if comment:
            if not comment.startswith(name + " "):
                wrong.append(f"{name}: comment does not start with its name")
            if not value:
                inside_value = indent
        elif value:
            wrong.append(f"{name}: no comment")
        comment = ""
    assert not wrong, wrong


def test_kind_config_mounts_the_folder_that_kind_up_gives_the_chart() -> None:
    """kind-config.yaml mounts ./shared-data into the node; scripts/kind-up.sh installs the
    chart with persistence.hostPath at the same node path."""
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    mounts = config["nodes"][0]["extraMounts"]
    assert [(m["hostPath"], m["containerPath"]) for m in mounts] == [
        ("./shared-data", "/shared-data")
    ]
    script = (ROOT / "scripts" / "kind-up.sh").read_text()
    assert "--set persistence.hostPath=/shared-data" in script
    # kind-config.yaml unless the project's own engine passes its derived copy (same mounts).
    create = 'kind create cluster --name "$CLUSTER" --config "${TJ_KIND_CONFIG:-kind-config.yaml}"'
    assert create in script


def test_namespaced_rbac_by_default_and_a_cluster_role_for_all_namespaces(cluster: Any) -> None:
    def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        rbac = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
        return sorted(
            (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
            for d in docs
            if d["kind"] in rbac
        )

    discovery = [
        ("ClusterRole", "", f"ns1-{FULLNAME}-discovery"),
        ("ClusterRoleBinding", "", f"ns1-{FULLNAME}-discovery"),
    ]
    assert kinds(template(cluster, "ns1")) == sorted(
        [*discovery, ("Role", "ns1", FULLNAME), ("RoleBinding", "ns1", FULLNAME)]
    )
    assert kinds(template(cluster, "ns1", watchNamespaces=["ns1", "ns2"])) == sorted(
        [
            *discovery,
            ("Role", "ns1", FULLNAME),
            ("Role", "ns2", FULLNAME),
            ("RoleBinding", "ns1", FULLNAME),
            ("RoleBinding", "ns2", FULLNAME),
        ]
    )
    assert kinds(template(cluster, "ns1", watchAllNamespaces=True)) == sorted(
        [
            *discovery,
            ("ClusterRole", "", f"ns1-{FULLNAME}"),
            ("ClusterRoleBinding", "", f"ns1-{FULLNAME}"),
        ]
    )
    assert kinds(template(cluster, "ns1", **{"rbac.create": False})) == []


def test_values_reach_the_operator_environment(cluster: Any) -> None:
    docs = template(
        cluster,
        "ns1",
        watchNamespaces=["ns1", "ns2"],
        **{
            "trainer.image.repository": "registry.example/trainer",
            "trainer.image.tag": "1.2.3",
            "trainer.image.pullPolicy": "Never",
            "trainer.resources": {"requests": {"cpu": "2"}},
            "operator.cancelGraceSeconds": 30,
            "operator.imagePullTimeoutSeconds": 90,
        },
    )
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == FULLNAME
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TJ_WATCH_NAMESPACES"] == "ns1,ns2"
    assert env["TJ_BRIDGE_NAMESPACE"] == "ns1"
    assert env["TJ_TRAINER_IMAGE"] == "registry.example/trainer:1.2.3"
    assert env["TJ_TRAINER_PULL_POLICY"] == "Never"
    # --set merges into the defaults: requests.cpu changes, the rest stays.
    assert json.loads(env["TJ_TRAINER_RESOURCES"]) == {
        "requests": {"cpu": "2", "memory": "1Gi"},
        "limits": {"memory": "4Gi"},
    }
    assert env["TJ_SHARED_PVC"] == CLAIM
    assert env["TJ_CANCEL_GRACE_SECONDS"] == "30"
    assert env["TJ_IMAGE_PULL_TIMEOUT_SECONDS"] == "90"
    assert env["SHARED_DATA_PATH"] == "/shared" == env["TJ_SHARED_MOUNT"]
    assert container["command"] == ["tjctl", "operator"]


def test_allowed_trainer_images_reach_the_operator_and_default_to_the_trainer_image(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def operator_config(**values: Any) -> OperatorConfig:
        docs = template(cluster, "ns1", **values)
        deployment = next(
            d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == FULLNAME
        )
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        for variable in env:
            if "value" in variable:
                monkeypatch.setenv(variable["name"], variable["value"])
        monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path))
        return OperatorConfig.from_env()

    assert operator_config().trainer_images == ("trainingjob-trainer:0.1.0",)
    more = operator_config(**{"trainer.allowedImages": ["r.example/t:2", "r.example/t:3"]})
    assert more.trainer_images == ("trainingjob-trainer:0.1.0", "r.example/t:2", "r.example/t:3")


def test_the_queue_bound_reaches_the_ui(cluster: Any) -> None:
    def ui_env(**values: Any) -> dict[str, Any]:
        docs = template(cluster, **values)
        ui = next(
            d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-ui")
        )
        return {
            e["name"]: e.get("value")
            for e in ui["spec"]["template"]["spec"]["containers"][0]["env"]
        }

    assert ui_env()["TJ_MAX_QUEUED_JOBS"] == "20"
    assert ui_env(**{"ui.maxQueuedJobs": 3})["TJ_MAX_QUEUED_JOBS"] == "3"
    assert "TJ_DASHBOARD_URL" not in ui_env()
    link = "http://127.0.0.1:8080/{namespace}/{name}/"
    assert ui_env(**{"ui.dashboardUrl": link})["TJ_DASHBOARD_URL"] == link


def test_the_ui_service_is_cluster_ip_and_network_policies_confine_each_pod(
    cluster: Any,
) -> None:
    docs = template(cluster, "ns1", watchNamespaces=["ns1", "ns2"])
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["type"] == "ClusterIP"
    policies = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
    }
    pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"]
        for d in docs
        if d["kind"] == "Deployment"
    }

    def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
        return policy["podSelector"]["matchLabels"].items() <= labels.items()

    ui = policies[("ns1", f"{FULLNAME}-ui")]
    assert selects(ui, pods["ui"]["labels"]) and not selects(ui, pods["operator"]["labels"])
    assert ui["policyTypes"] == ["Ingress"]
    [rule] = ui["ingress"]
    access = {"mltraining.dev/ui-access": "true"}
    assert rule["from"] == [
        {"podSelector": {"matchLabels": access}},
        {"namespaceSelector": {"matchLabels": access}},
    ]
    assert rule["ports"] == [{"port": 8501, "protocol": "TCP"}]
    operator = policies[("ns1", f"{FULLNAME}-operator")]
    assert selects(operator, pods["operator"]["labels"])
    assert operator["policyTypes"] == ["Ingress"] and not operator.get("ingress")
    # Trainer pods, as the operator labels them, in every watched namespace.
    trainer_labels = labels_for("some-run")
    for namespace in ("ns1", "ns2"):
        trainers = policies[(namespace, f"{FULLNAME}-trainers")]
        assert selects(trainers, trainer_labels)
        assert trainers["policyTypes"] == ["Ingress", "Egress"]
        assert not trainers.get("ingress") and not trainers.get("egress")
    custom = template(
        cluster, **{"networkPolicy.uiAccessLabel": "team", "networkPolicy.uiAccessValue": "ml"}
    )
    ui = next(
        d for d in custom if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-ui")
    )
    assert ui["spec"]["ingress"][0]["from"][0] == {"podSelector": {"matchLabels": {"team": "ml"}}}
    off = template(cluster, **{"networkPolicy.enabled": False})
    assert not [d for d in off if d["kind"] == "NetworkPolicy"]


def test_metrics_values_add_the_port_its_service_monitor_and_policy(cluster: Any) -> None:
    def kinds(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
        return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}

    default = template(cluster)
    assert f"{FULLNAME}-metrics" not in kinds(default, "Service")
    assert not kinds(default, "ServiceMonitor")
    [container] = kinds(default, "Deployment")[FULLNAME]["spec"]["template"]["spec"]["containers"]
    assert not [a for a in container["args"] if a.startswith("--metrics-port")]

    docs = template(
        cluster,
        **{
            "metrics.enabled": True,
            "metrics.port": 9400,
            "metrics.serviceMonitor.enabled": True,
            "metrics.serviceMonitor.labels": {"release": "prometheus"},
            "networkPolicy.metricsAccessLabel": "team",
            "networkPolicy.metricsAccessValue": "monitoring",
        },
    )
    pod = kinds(docs, "Deployment")[FULLNAME]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert "--metrics-port=9400" in container["args"]
    assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in container["ports"]
    service = kinds(docs, "Service")[f"{FULLNAME}-metrics"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9400, "targetPort": "metrics", "protocol": "TCP"}
    ]
    ui_service = kinds(docs, "Service")[f"{FULLNAME}-ui"]
    assert not service["spec"]["selector"].items() <= ui_service["spec"]["selector"].items()
    monitor = kinds(docs, "ServiceMonitor")[FULLNAME]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    policy = kinds(docs, "NetworkPolicy")[f"{FULLNAME}-operator"]["spec"]
    access = {"team": "monitoring"}
    assert policy["ingress"] == [
        {
            "from": [
                {"podSelector": {"matchLabels": access}},
                {"namespaceSelector": {"matchLabels": access}},
            ],
            "ports": [{"port": 9400, "protocol": "TCP"}],
        }
    ]
    clash = cluster.helm_run(
        "template",
        RELEASE,
        str(CHART),
        *KUBE,
        *sets({"metrics.enabled": True, "metrics.port": 8080}),
        check=False,
    )
    assert clash.returncode != 0 and "metrics.port must differ" in clash.stderr, clash.stderr


def test_the_database_url_reaches_pods_only_through_a_secret(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://tj:s3cret-pw@db.example:6432/jobs"
    encoded = base64.b64encode(url.encode()).decode()

    def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"][
                "containers"
            ][0]
            for d in docs
            if d["kind"] == "Deployment"
        }

    def url_env(container: dict[str, Any]) -> dict[str, Any]:
        [variable] = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
        return dict(variable)

    docs = template(
        cluster,
        "ns1",
        watchNamespaces=["ns1", "ns2"],
        **{"database.url": url, "database.port": 6432},
    )
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in secrets} == {
        ("ns1", f"{FULLNAME}-database"),
        ("ns2", f"{FULLNAME}-database"),
    }
    assert all(base64.b64decode(d["data"]["database-url"]).decode() == url for d in secrets)
    # Nowhere else: not in a plain env, a ConfigMap, an annotation, a NOTES line.
    for doc in docs:
        if doc["kind"] != "Secret":
            text = json.dumps(doc)
            assert "s3cret" not in text and encoded not in text and "db.example" not in text, doc
    notes = cluster.helm_run(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run",
        "--namespace",
        "ns1",
        *sets({"database.url": url}),
    ).stdout
    assert "s3cret" not in notes.split("MANIFEST:")[0]
    wanted = {"secretKeyRef": {"name": f"{FULLNAME}-database", "key": "database-url"}}
    for container in deployments(docs).values():
        assert url_env(container) == {"name": "DATABASE_URL", "valueFrom": wanted}
    # The operator hands trainer pods the Secret's name and key, never the URL.
    operator_env = {e["name"]: e for e in deployments(docs)["operator"]["env"]}
    for variable in operator_env.values():
        if "value" in variable:
            monkeypatch.setenv(variable["name"], variable["value"])
    monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path))
    config = OperatorConfig.from_env()
    assert (config.database_secret_name, config.database_secret_key) == (
        f"{FULLNAME}-database",
        "database-url",
    )
    # Trainer pods may reach the database's port (and DNS), nothing else.
    trainers = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-trainers")
    ]
    assert len(trainers) == 2
    for policy in trainers:
        ports = [p for rule in policy["spec"]["egress"] for p in rule["ports"]]
        assert ports == [
            {"port": 6432, "protocol": "TCP"},
            {"port": 53, "protocol": "UDP"},
            {"port": 53, "protocol": "TCP"},
        ]

    # A Secret of the user's: referenced, none made.
    mine = template(cluster, "ns1", **{"database.existingSecret": "pg", "database.secretKey": "u"})
    assert not [d for d in mine if d["kind"] == "Secret"]
    for container in deployments(mine).values():
        assert url_env(container)["valueFrom"] == {"secretKeyRef": {"name": "pg", "key": "u"}}
    operator_env = {e["name"]: e.get("value") for e in deployments(mine)["operator"]["env"]}
    assert (operator_env["TJ_DATABASE_SECRET_NAME"], operator_env["TJ_DATABASE_SECRET_KEY"]) == (
        "pg",
        "u",
    )

    # No database: the SQLite file on the volume, no Secret, trainers without egress.
    default = template(cluster, "ns1")
    assert not [d for d in default if d["kind"] == "Secret"]
    for container in deployments(default).values():
        names = {e["name"] for e in container["env"]}
        assert "DATABASE_URL" not in names and "TJ_DATABASE_SECRET_NAME" not in names


def _secret_value(doc: dict[str, Any], key: str) -> str:
    return base64.b64decode(doc["data"][key]).decode()


def test_the_charts_own_postgresql_is_off_by_default_and_wired_through_secrets(
    cluster: Any,
) -> None:
    assert not [d for d in template(cluster) if d["kind"] == "StatefulSet"]
    docs = template(
        cluster,
        "ns1",
        watchNamespaces=["ns1", "ns2"],
        **{"postgresql.enabled": True, "postgresql.password": "pw-of-the-test"},
    )
    name = f"{FULLNAME}-postgresql"
    by_kind = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    statefulset = by_kind[("StatefulSet", "ns1", name)]
    assert by_kind[("Service", "ns1", name)]["spec"]["ports"][0]["port"] == 5432
    assert _secret_value(by_kind[("Secret", "ns1", name)], "password") == "pw-of-the-test"
    url = f"postgresql://tj:pw-of-the-test@{name}.ns1.svc:5432/trainingjobs"
    for namespace in ("ns1", "ns2"):
        secret = by_kind[("Secret", namespace, f"{FULLNAME}-database")]
        assert _secret_value(secret, "database-url") == url
    for doc in docs:
        if doc["kind"] != "Secret":
            assert "pw-of-the-test" not in json.dumps(doc), doc
    pod = statefulset["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": name, "key": "password"}
    }
    assert (env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"]) == ("tj", "trainingjobs")
    # Only the release's operator and UI and the trainer pods may connect.
    policy = by_kind[("NetworkPolicy", "ns1", name)]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy
    sources = policy["ingress"][0]["from"]
    assert [s["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for s in sources] == [
        "operator",
        "ui",
        "trainer",
        "trainer",
    ]
    assert [s.get("namespaceSelector") for s in sources[2:]] == [
        {"matchLabels": {"kubernetes.io/metadata.name": "ns1"}},
        {"matchLabels": {"kubernetes.io/metadata.name": "ns2"}},
    ]
    both = cluster.helm_run(
        "template",
        RELEASE,
        str(CHART),
        *KUBE,
        *sets({"postgresql.enabled": True, "database.url": "postgresql://a:b@c/d"}),
        check=False,
    )
    assert both.returncode != 0 and "postgresql.enabled deploys the chart's own" in both.stderr


def test_the_charts_postgresql_is_admitted_as_restricted_and_keeps_its_password(
    cluster: Any, release: str
) -> None:
    values = {"postgresql.enabled": True, "operator.replicas": 0, "ui.enabled": False}
    result = install(cluster, release, **values)
    assert "violate PodSecurity" not in result.stderr, result.stderr
    name = f"{FULLNAME}-postgresql"

    def secrets() -> tuple[str, str]:
        password = cluster.get_json("secret", name, "-n", release)
        database = cluster.get_json("secret", f"{FULLNAME}-database", "-n", release)
        return _secret_value(password, "password"), _secret_value(database, "database-url")

    password, url = secrets()
    assert len(password) == 32 and f"tj:{password}@{name}.{release}.svc:5432/" in url
    cluster.helm_run(
        "upgrade", RELEASE, str(CHART), "--namespace", release, *sets(values), timeout=180
    )
    assert secrets() == (password, url), "an upgrade changed the database password"


def test_values_the_operator_would_reject_fail_at_render_time(cluster: Any) -> None:
    for values, message in (
        # values.schema.json
        ({"operator.replicas": 2}, "at '/operator/replicas'"),
        ({"persistence.accessMode": "ReadOnlyMany"}, "at '/persistence/accessMode'"),
        ({"watchNamespace": ["a"]}, "additional properties 'watchNamespace' not allowed"),
        ({"trainer.image.tag": 1}, "at '/trainer/image/tag'"),
        ({"trainer.image.pullPolicy": "Sometimes"}, "at '/trainer/image/pullPolicy'"),
        ({"operator.imagePullTimeoutSeconds": 0}, "at '/operator/imagePullTimeoutSeconds'"),
        ({"trainer.allowedImages": ["a:1,b:2"]}, "at '/trainer/allowedImages/0'"),
        ({"ui.maxQueuedJobs": 0}, "at '/ui/maxQueuedJobs'"),
        ({"ui.dashboardUrl": "127.0.0.1:8080"}, "at '/ui/dashboardUrl'"),
        ({"networkPolicy.uiAccessLabel": "no spaces"}, "at '/networkPolicy/uiAccessLabel'"),
        ({"metrics.port": 0}, "at '/metrics/port'"),
        ({"database.port": 0}, "at '/database/port'"),
        ({"database.secretKey": "a key"}, "at '/database/secretKey'"),
        ({"postgresql.password": "has@at"}, "at '/postgresql/password'"),
        ({"postgresql.user": "Bad-User"}, "at '/postgresql/user'"),
        ({"metrics.serviceMonitor.interval": "often"}, "at '/metrics/serviceMonitor/interval'"),
        # the templates' own checks
        ({"watchNamespaces": ["a"], "bridge.namespace": "b"}, 'bridge.namespace "b"'),
    ):
        result = cluster.helm_run(
            "template", RELEASE, str(CHART), *KUBE, *sets(values), check=False
        )
        assert result.returncode != 0 and message in result.stderr, (values, result.stderr)


# -- against the API server ------------------------------------------------------------------


def test_install_in_a_restricted_namespace_admits_every_object_and_runs_the_pods(
    cluster: Any, release: str, ports: dict[str, int]
) -> None:
    result = install(cluster, release, **ports)
    assert "violate PodSecurity" not in result.stderr, result.stderr
    assert f"kubectl get trainingjobs -n {release} -w" in result.stdout  # NOTES.txt

    objects = manifest_objects(cluster, release)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects:
        scope = ["-n", obj["metadata"]["namespace"]] if obj["metadata"].get("namespace") else []
        found = cluster.get_json(obj["kind"].lower(), obj["metadata"]["name"], *scope)
        labels = found["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "trainingjob-operator-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"

    # The ReplicaSets' pods passed the restricted admission; the harness runs their commands.
    for component in ("operator", "ui"):
        pods = wait_for(
            lambda c=component: pods_of(cluster, release, c), 60, f"the {component} pod"
        )
        assert len(pods) == 1
        wait_for(
            lambda c=component: pods_of(cluster, release, c)[0]["status"].get("phase") == "Running",
            60,
            f"the {component} pod to run",
        )
    crd = cluster.get_json("crd", "trainingjobs.mltraining.dev")
    assert crd["spec"]["names"]["shortNames"] == ["tj"]


def test_the_operator_pod_gets_its_database_from_the_charts_secret(
    cluster: Any, release: str, ports: dict[str, int], postgres_server: PostgresServer
) -> None:
    """database.url on a real PostgreSQL server: the chart's Secret, the operator pod's
    secretKeyRef (resolved as a kubelet would), the operator creating the table there and
    its table bridge turning a row of that database into a TrainingJob."""
    url = postgres_server.new_database()
    try:
        values = {**ports, "ui.enabled": False, "database.url": url}
        install(cluster, release, **values)
        [pod] = wait_for(lambda: pods_of(cluster, release, "operator"), 60, "the operator pod")
        [env] = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "DATABASE_URL"]
        assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == (
            f"{FULLNAME}-database"
        )
        assert postgres_server.password not in json.dumps(pod)

        def table_made() -> bool:
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
                row = conn.execute("SELECT to_regclass('training_jobs')").fetchone()
            return row is not None and row[0] is not None

        wait_for(table_made, 90, "the operator pod to create the table in PostgreSQL")
        store = JobStore(url)
        try:
            job_id = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="ui")

            def claimed_name() -> str | None:
                row = store.get(job_id)
                return row.name if row else None

            name = wait_for(claimed_name, 60, "the bridge to claim the row")

            def made() -> bool:
                found = cluster.kubectl("get", "trainingjob", name, "-n", release, check=False)
                return bool(found.returncode == 0)

            wait_for(made, 60, "the bridge's TrainingJob")
            cluster.kubectl("delete", "trainingjob", name, "-n", release, "--timeout=60s")
        finally:
            store.close()
    finally:
        uninstall(cluster, release)
        postgres_server.drop_database(url.rsplit("/", 1)[1])


def test_upgrade_with_changed_values_then_uninstall(
    cluster: Any, release: str, ports: dict[str, int]
) -> None:
    install(cluster, release, **ports, **{"operator.replicas": 0})
    assert cluster.get_json("service", f"{FULLNAME}-ui", "-n", release)

    cluster.helm_run(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        release,
        *sets(
            {
                **ports,
                "operator.replicas": 0,
                "operator.verbose": True,
                "ui.enabled": False,
                "trainer.image.tag": "9.9.9",
            }
        ),
        timeout=180,
    )
    deployment = cluster.get_json("deployment", FULLNAME, "-n", release)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--verbose" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TJ_TRAINER_IMAGE"] == "trainingjob-trainer:9.9.9"
    gone = cluster.kubectl("get", "service", f"{FULLNAME}-ui", "-n", release, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    history = cluster.helm_run("history", RELEASE, "-n", release, "-o", "json").stdout
    assert [h["revision"] for h in json.loads(history)] == [1, 2]

    cluster.helm_run("uninstall", RELEASE, "--namespace", release, "--wait")
    left = cluster.kubectl(
        "get",
        "deployments,services,serviceaccounts,roles,rolebindings,pvc",
        "-n",
        release,
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
    ).stdout.split()
    # The shared data outlives the release (persistence.keepOnUninstall).
    assert left == [f"persistentvolumeclaim/{CLAIM}"]
    for kind in ("clusterrole", "clusterrolebinding"):
        name = f"{release}-{FULLNAME}-discovery"
        assert cluster.kubectl("get", kind, name, check=False).returncode != 0


def test_kind_values_bind_a_host_path_volume_and_write_a_synthetic_dataset(
    cluster: Any, release: str, tmp_path: Path
) -> None:
    """What `make kind-up` installs: a hostPath PV for the claim and the dataset hook Job
    (helm install waits for it; the pod harness runs it)."""
    shared = cluster.pvc_dir(CLAIM)
    dataset = shared / "datasets" / "15m" / "dataset.parquet"
    dataset.unlink(missing_ok=True)
    volume = f"{release}-{FULLNAME}-shared"
    try:
        install(
            cluster,
            release,
            **{
                "persistence.hostPath": str(tmp_path / "shared-data"),
                "syntheticDataset.enabled": True,
                "syntheticDataset.rows": 3000,
                "operator.replicas": 0,
                "ui.enabled": False,
            },
        )
        claim = wait_for(
            lambda: (lambda c: c if c["status"].get("phase") == "Bound" else None)(
                cluster.get_json("pvc", CLAIM, "-n", release)
            ),
            60,
            "the claim to bind",
        )
        assert claim["spec"]["volumeName"] == volume
        assert claim["spec"]["storageClassName"] == ""
        assert dataset.exists()
        hook = cluster.get_json("job", f"{FULLNAME}-dataset-15m", "-n", release)
        assert hook["status"].get("succeeded") == 1
    finally:
        uninstall(cluster, release)
        # persistence.keepOnUninstall keeps the volume too; a test cleans up after itself.
        cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)


def test_operator_service_account_may_do_its_work_and_no_more(cluster: Any, release: str) -> None:
    install(cluster, release, **{"operator.replicas": 0, "ui.enabled": False})
    ns = release
    may = [
        ("patch", "trainingjobs.mltraining.dev", "--subresource=status"),
        ("update", "trainingjobs.mltraining.dev", "--subresource=status"),
        ("watch", "trainingjobs.mltraining.dev"),
        ("patch", "trainingjobs.mltraining.dev"),  # kopf's finalizer
        ("create", "trainingjobs.mltraining.dev"),  # the table bridge
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("list", "pods"),
        ("create", "events"),
        ("create", "events.events.k8s.io"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "namespaces"),
    ]
    may_not = [
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "configmaps"),
        ("create", "pods"),
        ("delete", "pods"),
        ("delete", "trainingjobs.mltraining.dev"),
        ("create", "deployments.apps"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    assert [v for v in may if not can_i(cluster, ns, *v)] == []
    assert [v for v in may_not if can_i(cluster, ns, *v)] == []
    # By default it watches its own namespace only.
    assert not can_i(cluster, ns, "list", "trainingjobs.mltraining.dev", where="default")
    assert not can_i(cluster, ns, "create", "jobs.batch", where="default")


def test_watching_all_namespaces_grants_the_same_verbs_cluster_wide(
    cluster: Any, release: str
) -> None:
    install(
        cluster, release, watchAllNamespaces=True, **{"operator.replicas": 0, "ui.enabled": False}
    )

    for where in ("default", release):
        assert can_i(cluster, release, "create", "jobs.batch", where=where)
        assert can_i(cluster, release, "list", "trainingjobs.mltraining.dev", where=where)
        assert can_i(
            cluster,
            release,
            "patch",
            "trainingjobs.mltraining.dev",
            "--subresource=status",
            where=where,
        )
        assert not can_i(cluster, release, "get", "secrets", where=where)

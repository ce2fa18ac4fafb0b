"""The trainer Job: deterministic, owned, restricted, and built from the spec."""

from __future__ import annotations

import re

import pytest

from tjcore.spec import SpecError, validate_spec
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import (
    build_job,
    build_trainingjob_for_row,
    job_name,
    row_trainingjob_name,
    trainer_image,
)
from tjtrainer.exitcodes import EXIT_BAD_ARGUMENTS, EXIT_PERMANENT, EXIT_TRANSIENT

CONFIG = OperatorConfig(
    trainer_image="trainer:1",
    allowed_images=("custom:2",),
    pvc_claim="shared-claim",
    shared_mount="/data",
)


def build(**spec: object) -> dict:
    parsed = validate_spec({"timeframe": "15m", **spec})
    return build_job(name="tj-a", namespace="ml", uid="uid-1", spec=parsed, config=CONFIG)


def test_job_name_and_owner_are_deterministic() -> None:
    job = build()
    assert job["metadata"]["name"] == job_name("tj-a") == "tj-a-train"
    assert job == build(), "the same TrainingJob must always give the same Job"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "mltraining.dev/v1alpha1",
        "kind": "TrainingJob",
        "name": "tj-a",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_spec_fields_reach_the_job_and_the_trainer() -> None:
    job = build(
        nTrials=7,
        trainRatio=0.7,
        seed=3,
        backoffLimit=4,
        activeDeadlineSeconds=600,
        ttlSecondsAfterFinished=60,
        image="custom:2",
        resources={"limits": {"cpu": "2", "memory": "3Gi"}},
    )
    spec = job["spec"]
    assert (
        spec["backoffLimit"],
        spec["activeDeadlineSeconds"],
        spec["ttlSecondsAfterFinished"],
    ) == (4, 600, 60)
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "custom:2"
    assert container["resources"] == {"limits": {"cpu": "2", "memory": "3Gi"}}
    args = container["args"]
    assert args[args.index("--n-trials") + 1] == "7"
    assert args[args.index("--train-ratio") + 1] == "0.7"
    assert args[args.index("--seed") + 1] == "3"
    assert args[args.index("--run-dir") + 1] == "/data/runs/ml/tj-a-uid-1"


@pytest.mark.parametrize("warm", ["latest", "15m_20261201_120000"])
def test_a_warm_start_reaches_the_trainer_and_none_adds_nothing(warm: str) -> None:
    args = build(warmStart=warm)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--warm-start") + 1] == warm
    cold = build()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--warm-start" not in cold


def test_defaults_come_from_the_operator_config() -> None:
    container = build()["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "trainer:1"
    assert container["resources"] == CONFIG.default_resources
    volumes = build()["spec"]["template"]["spec"]["volumes"]
    assert {"name": "shared", "persistentVolumeClaim": {"claimName": "shared-claim"}} in volumes


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = build()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["restartPolicy"] == "Never"
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True


def test_permanent_trainer_failures_fail_the_job_at_once() -> None:
    rules = build()["spec"]["podFailurePolicy"]["rules"]
    fail = [rule for rule in rules if rule["action"] == "FailJob"]
    assert len(fail) == 1
    assert fail[0]["onExitCodes"]["values"] == [EXIT_BAD_ARGUMENTS, EXIT_PERMANENT]
    # Transient exits (75, Python's own 1, a kill's 137/143) go through backoffLimit.
    for code in (EXIT_TRANSIENT, 1, 137, 143):
        assert code not in fail[0]["onExitCodes"]["values"]


def test_evictions_and_drains_do_not_count_against_backoff_limit() -> None:
    rules = build()["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_a_table_row_becomes_a_named_trainingjob() -> None:
    name = row_trainingjob_name(12)
    body = build_trainingjob_for_row(
        row_id=12,
        name=name,
        namespace="ml",
        timeframe="1h",
        n_trials=5,
        train_ratio=0.75,
        seed=1,
        parallelism=1,
    )
    assert body["metadata"]["name"] == name
    # The id for people, a random part for tables whose ids start again at 1.
    assert re.fullmatch(r"row-12-[0-9a-f]{6}", name)
    assert row_trainingjob_name(12) != name
    assert body["metadata"]["annotations"] == {"mltraining.dev/row-id": "12"}
    validate_spec(body["spec"])


def test_operator_config_reads_trainer_resources_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TJ_TRAINER_RESOURCES", '{"requests": {"cpu": 2}, "limits": {}}')
    config = OperatorConfig.from_env()
    assert config.default_resources == {"requests": {"cpu": "2"}, "limits": {}}
    monkeypatch.setenv("TJ_TRAINER_RESOURCES", "cpu=2")
    with pytest.raises(ValueError, match="TJ_TRAINER_RESOURCES must be JSON"):
        OperatorConfig.from_env()


def test_the_trainer_gets_no_api_token() -> None:
    assert build()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_trainer_pull_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TJ_TRAINER_PULL_POLICY", "Never")
    config = OperatorConfig.from_env(trainer_image="trainer:1")
    parsed = validate_spec({"timeframe": "15m"})
    job = build_job(name="tj-a", namespace="ml", uid="uid-1", spec=parsed, config=config)
    assert job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    monkeypatch.delenv("TJ_TRAINER_PULL_POLICY")
    assert OperatorConfig.from_env().trainer_pull_policy == "IfNotPresent"
    monkeypatch.setenv("TJ_TRAINER_PULL_POLICY", "sometimes")
    with pytest.raises(
        ValueError, match="TJ_TRAINER_PULL_POLICY must be one of Always, IfNotPresent, Never"
    ):
        OperatorConfig.from_env()


def test_integer_quantities_reach_the_job_as_strings() -> None:
    job = build(resources={"requests": {"cpu": 2, "memory": "1Gi"}, "limits": {"cpu": 3}})
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "1Gi"},
        "limits": {"cpu": "3"},
    }


def test_an_image_outside_the_allow_list_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(SpecError) as refused:
        build(image="attacker/anything:latest")
    message = str(refused.value)
    assert message.startswith("spec.image: 'attacker/anything:latest' is not an allowed")
    assert "allowed: trainer:1, custom:2" in message
    assert "trainer.allowedImages" in message
    only_default = OperatorConfig(trainer_image="trainer:1")
    assert only_default.trainer_images == ("trainer:1",)
    with pytest.raises(SpecError, match="allowed: trainer:1 "):
        trainer_image(validate_spec({"timeframe": "15m", "image": "custom:2"}), only_default)
    assert trainer_image(validate_spec({"timeframe": "15m", "image": "trainer:1"}), only_default)


def test_the_trainer_mounts_only_its_run_folder_the_datasets_read_only_and_the_models() -> None:
    container = build()["spec"]["template"]["spec"]["containers"][0]
    shared = [m for m in container["volumeMounts"] if m["name"] == "shared"]
    assert shared == [
        {
            "name": "shared",
            "mountPath": "/data/runs/ml/tj-a-uid-1",
            "subPath": "runs/ml/tj-a-uid-1",
        },
        {"name": "shared", "mountPath": "/data/datasets", "subPath": "datasets", "readOnly": True},
        {"name": "shared", "mountPath": "/data/models", "subPath": "models"},
    ]
    args = container["args"]
    assert args[args.index("--run-dir") + 1] == "/data/runs/ml/tj-a-uid-1"
    assert args[args.index("--data-root") + 1] == "/data"

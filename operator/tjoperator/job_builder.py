"""Pure builders of the objects the operator creates: the trainer Job and the
TrainingJob that the table bridge makes from a row. No API calls here."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from tjcontract.layout import DATASETS_FOLDER, MODELS_FOLDER, run_path
from tjcontract.names import API_VERSION, KIND
from tjcontract.spec import DEFAULT_EMBARGO, DEFAULT_FOLDS
from tjcore.spec import SpecError, TrainingJobSpec
from tjoperator.config import OperatorConfig
from tjtrainer.config import STUDY_STORAGE_ENV
from tjtrainer.exitcodes import PERMANENT_EXIT_CODES

LABEL_TRAININGJOB = "mltraining.dev/trainingjob"
ANNOTATION_ROW_ID = "mltraining.dev/row-id"
TRAINER_CONTAINER = "trainer"
RUN_AS_USER = 10001


def job_name(trainingjob_name: str) -> str:
    """The deterministic name of the Job of a TrainingJob."""
    return f"{trainingjob_name}-train"


def run_dir_in_pod(config: OperatorConfig, namespace: str, name: str, uid: str) -> str:
    return f"{config.shared_mount}/{run_path(namespace, name, uid)}"


def labels_for(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "trainingjob-trainer",
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/managed-by": "trainingjob-operator",
        LABEL_TRAININGJOB: name,
    }


def trainer_args(spec: TrainingJobSpec, run_dir: str, data_root: str) -> list[str]:
    return [
        "train",
        "--timeframe",
        spec.timeframe,
        "--n-trials",
        str(spec.nTrials),
        "--train-ratio",
        str(spec.trainRatio),
        "--seed",
        str(spec.seed),
        "--parallelism",
        str(spec.parallelism),
        "--cv-folds",
        str(spec.cvFolds),
        "--embargo",
        str(spec.embargo),
        "--promotion",
        spec.promotion,
        "--run-dir",
        run_dir,
        "--data-root",
        data_root,
        *(["--warm-start", spec.warmStart] if spec.warmStart != "none" else []),
    ]


def _quantities_as_strings(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Resource quantities as the Job's schema types them: ``cpu: 2`` becomes ``"2"``."""
    return {key: {name: str(amount) for name, amount in q.items()} for key, q in resources.items()}


def trainer_image(spec: TrainingJobSpec, config: OperatorConfig) -> str:
    """The image of the trainer pods: ``spec.image`` if the operator allows it.

    Raises:
        SpecError: ``spec.image`` names an image outside ``config.trainer_images``.
    """
    if not spec.image:
        return config.trainer_image
    if spec.image not in config.trainer_images:
        raise SpecError(
            f"spec.image: {spec.image!r} is not an allowed trainer image; allowed: "
            f"{', '.join(config.trainer_images)} (leave spec.image empty for the default, "
            "or ask the operator's admin to add it: chart value trainer.allowedImages, "
            "TJ_ALLOWED_TRAINER_IMAGES)"
        )
    return spec.image


def study_secret(spec: TrainingJobSpec, config: OperatorConfig) -> tuple[str, str] | None:
    """The Secret (name, key) holding the PostgreSQL URL the workers of ``spec`` share
    their studies in; ``None`` for one worker (its studies stay in the run folder).

    Raises:
        SpecError: ``spec.workers`` > 1 while the operator has no PostgreSQL database.
    """
    if spec.workers <= 1:
        return None
    name, key = config.database_secret_name, config.database_secret_key
    if not name or not config.database_url.startswith("postgresql"):
        raise SpecError(
            f"spec.workers: {spec.workers} trainer pods share their Optuna studies in "
            "PostgreSQL, and this operator's database is SQLite: give it a PostgreSQL URL "
            "(chart value database.url or database.existingSecret), or set spec.workers: 1"
        )
    return name, key


def check_job_allowed(spec: TrainingJobSpec, config: OperatorConfig) -> None:
    """What the operator refuses before it makes a Job: an image it does not allow,
    workers without PostgreSQL.

    Raises:
        SpecError: saying what is wrong and how to fix it.
    """
    trainer_image(spec, config)
    study_secret(spec, config)


def trainer_mounts(
    config: OperatorConfig, namespace: str, name: str, uid: str
) -> list[dict[str, Any]]:
    """Only what the trainer needs of the shared volume: its own run folder, ``datasets/``
    read-only and ``models/``; never the table, other runs' folders or the volume's
    root. The operator makes these folders (as the pods' user) before the pod starts:
    a folder the kubelet makes for a ``subPath`` belongs to root."""
    mount = config.shared_mount
    run = run_path(namespace, name, uid)
    return [
        {"name": "shared", "mountPath": f"{mount}/{run}", "subPath": run},
        {
            "name": "shared",
            "mountPath": f"{mount}/{DATASETS_FOLDER}",
            "subPath": DATASETS_FOLDER,
            "readOnly": True,
        },
        {"name": "shared", "mountPath": f"{mount}/{MODELS_FOLDER}", "subPath": MODELS_FOLDER},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def pod_failure_policy() -> dict[str, Any]:
    """How the Job counts a failed trainer pod (the contract of tjtrainer.exitcodes): a
    pod evicted or drained (condition DisruptionTarget) is not counted against
    ``backoffLimit``; a permanent exit fails the Job at once; any other exit is retried
    up to ``backoffLimit`` times, and each retry resumes the study."""
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": TRAINER_CONTAINER,
                    "operator": "In",
                    "values": list(PERMANENT_EXIT_CODES),
                },
            },
        ]
    }


def build_job(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: TrainingJobSpec,
    config: OperatorConfig,
    queue: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs the trainer of TrainingJob ``namespace/name``.

    The pod meets the "restricted" Pod Security Standard; parts of the shared PVC are
    mounted under ``config.shared_mount`` (:func:`trainer_mounts`); the owner reference
    makes the Job go with its TrainingJob. ``queue``, the TrainingJob's Kueue labels
    (:func:`tjoperator.kueue.queue_labels`), go on the Job, which then starts suspended
    until Kueue admits it.

    With ``spec.workers`` N > 1 it is an Indexed Job of N pods at once (each finds its
    index in ``JOB_COMPLETION_INDEX``) that get the study database's URL from the Secret
    of :func:`study_secret`, never as plain text.

    Raises:
        SpecError: ``spec.image`` is not an allowed trainer image, or ``spec.workers`` > 1
            without PostgreSQL.
    """
    labels = labels_for(name)
    queue = dict(queue or {})
    secret = study_secret(spec, config)
    args = trainer_args(spec, run_dir_in_pod(config, namespace, name, uid), config.shared_mount)
    env: list[dict[str, Any]] = []
    if secret is not None:
        args += ["--workers", str(spec.workers)]
        env.append(
            {
                "name": STUDY_STORAGE_ENV,
                "valueFrom": {"secretKeyRef": {"name": secret[0], "key": secret[1]}},
            }
        )
    container = {
        "name": TRAINER_CONTAINER,
        "image": trainer_image(spec, config),
        "imagePullPolicy": config.trainer_pull_policy,
        "command": ["python", "-m", "tjtrainer"],
        "args": args,
        "env": [
            {"name": "SHARED_DATA_PATH", "value": config.shared_mount},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            # The root filesystem is read-only: caches and temporary files go to /tmp.
            {"name": "HOME", "value": "/tmp"},
            *env,
        ],
        "resources": _quantities_as_strings(spec.resources or config.default_resources),
        "volumeMounts": trainer_mounts(config, namespace, name, uid),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = {
        "restartPolicy": "Never",
        # The trainer never talks to the API.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "shared", "persistentVolumeClaim": {"claimName": config.pvc_claim}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoffLimit,
        "activeDeadlineSeconds": spec.activeDeadlineSeconds,
        "ttlSecondsAfterFinished": spec.ttlSecondsAfterFinished,
        "podFailurePolicy": pod_failure_policy(),
        # spec.suspend: the Job controller then runs no pod until it is resumed; a
        # queued Job waits for Kueue to unsuspend it.
        "suspend": spec.suspend or bool(queue),
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if secret is not None:
        # One pod per index, all at once; the Job completes when every index succeeded
        # (the workers end when no trial is left, worker 0 once the models are saved).
        job_spec |= {
            "completionMode": "Indexed",
            "completions": spec.workers,
            "parallelism": spec.workers,
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": namespace,
            "labels": labels | queue,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def build_trainingjob_for_row(
    *,
    row_id: int,
    name: str,
    namespace: str,
    timeframe: str,
    n_trials: int,
    train_ratio: float,
    seed: int,
    parallelism: int,
    cv_folds: int = DEFAULT_FOLDS,
    embargo: int = DEFAULT_EMBARGO,
    promotion: str = "always",
) -> dict[str, Any]:
    """The TrainingJob the table bridge creates for a row the UI inserted."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {ANNOTATION_ROW_ID: str(row_id)},
            "labels": {"app.kubernetes.io/created-by": "trainingjob-table-bridge"},
        },
        "spec": {
            "timeframe": timeframe,
            "nTrials": n_trials,
            "trainRatio": train_ratio,
            "seed": seed,
            "parallelism": parallelism,
            "cvFolds": cv_folds,
            "embargo": embargo,
            "promotion": promotion,
        },
    }


def row_trainingjob_name(row_id: int) -> str:
    """A new TrainingJob name for table row ``row_id``: the id for people, a random part
    so that a row of a new table (ids start again at 1) never meets the TrainingJob of an
    old row. The bridge stores it in the row before it creates the TrainingJob, so the
    TrainingJob is made exactly once even across restarts."""
    return f"row-{row_id}-{secrets.token_hex(3)}"

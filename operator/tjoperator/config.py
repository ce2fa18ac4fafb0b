"""The operator's settings, from flags and environment variables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tjcontract import checks
from tjoperator.status import DEFAULT_IMAGE_PULL_TIMEOUT_SECONDS

DEFAULT_TRAINER_IMAGE = "trainingjob-trainer:0.1.0"
DEFAULT_PVC = "trainingjob-shared"
DEFAULT_MOUNT = "/shared"
# The key of the database Secret that holds the URL (the chart's database.secretKey).
DEFAULT_DATABASE_SECRET_KEY = "database-url"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs beyond the TrainingJob itself.

    Attributes:
        namespaces: namespaces to watch; empty means all (cluster-wide).
        shared_data_path: the operator's own mount of the shared volume (reads runs/).
        database_url: the ``training_jobs`` table.
        database_secret_name: the Secret that holds ``database_url`` (the chart's
            ``database.existingSecret`` or the one it makes from ``database.url``);
            trainer pods get the URL from it through a ``secretKeyRef``, never as text.
            ``None``: no Secret (SQLite, or a URL given to the operator directly).
        database_secret_key: the key of that Secret holding the URL.
        trainer_image: image of the trainer pods unless ``spec.image`` says otherwise.
        allowed_images: further images a ``spec.image`` may name (the operator's policy;
            the trainer image is always allowed); a TrainingJob naming any other fails
            with reason InvalidSpec.
        trainer_pull_policy: the trainer pods' ``imagePullPolicy`` (``Never`` where the
            images are loaded into the nodes by hand).
        pvc_claim: the shared PersistentVolumeClaim mounted into trainer pods.
        shared_mount: where trainer pods see the shared volume.
        bridge_namespace: where rows inserted by the UI become TrainingJobs; ``None``
            switches the bridge off.
        cancel_grace_seconds: after ``spec.cancel``, how long the trainer may take to
            finish its trial before the operator deletes the Job.
        image_pull_timeout_seconds: how long a trainer pod may keep failing to pull its
            image (ErrImagePull, ImagePullBackOff) before the TrainingJob fails with
            reason ImagePullBackOff and its Job is deleted.
        poll_seconds: how often a running job's progress file is read.
        metrics_port: the port of the Prometheus endpoint ``/metrics``; ``None``: none.
        metrics_address: the address that endpoint binds (all interfaces by default).
        default_resources: trainer resources when the spec gives none.
    """

    namespaces: tuple[str, ...] = ()
    shared_data_path: Path = Path("./shared-data")
    database_url: str = ""
    database_secret_name: str | None = None
    database_secret_key: str = DEFAULT_DATABASE_SECRET_KEY
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    allowed_images: tuple[str, ...] = ()
    trainer_pull_policy: str = "IfNotPresent"
    pvc_claim: str = DEFAULT_PVC
    shared_mount: str = DEFAULT_MOUNT
    bridge_namespace: str | None = "default"
    cancel_grace_seconds: float = 120.0
    image_pull_timeout_seconds: float = DEFAULT_IMAGE_PULL_TIMEOUT_SECONDS
    poll_seconds: float = 0.25
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    default_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        }
    )

    @classmethod
    def from_env(cls, **flags: object) -> OperatorConfig:
        """Each of :data:`SETTINGS` from its flag (``flags``: those given on the command
        line, by attribute), else its environment variable, else the default; then
        ``SHARED_DATA_PATH`` and ``DATABASE_URL`` as every component reads them."""
        from tjcore.settings import Settings

        settings = Settings.from_env()
        values: dict[str, object] = {
            "shared_data_path": settings.shared_data_path,
            "database_url": settings.database_url,
        }
        for setting in SETTINGS:
            given = flags.get(setting.attribute)
            if given is not None and setting.flag:
                raw = ",".join(given) if isinstance(given, tuple) else str(given)
                name = setting.flag
            elif os.environ.get(setting.env) or (setting.empty_means and setting.env in os.environ):
                raw, name = os.environ[setting.env], setting.env
            else:
                continue  # the dataclass's default
            values[setting.attribute] = checks.named(setting.check, name)(raw)
        config = cls(**values)  # type: ignore[arg-type]
        if config.namespaces and config.bridge_namespace not in (None, *config.namespaces):
            raise ValueError(
                f"the bridge namespace {config.bridge_namespace!r} is not watched "
                f"({', '.join(config.namespaces)}); add it with --namespace or set "
                "--bridge-namespace to a watched one"
            )
        return config

    @property
    def trainer_images(self) -> tuple[str, ...]:
        """The images a trainer pod may run: the trainer image, then the allowed ones."""
        return tuple(dict.fromkeys((self.trainer_image, *self.allowed_images)))


def _resources(text: str) -> dict[str, dict[str, str]]:
    """``TJ_TRAINER_RESOURCES``: JSON such as ``{"requests": {"cpu": "1"}}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"must be JSON, got {text!r}: {err}") from None
    if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
        raise ValueError(f'must be {{"requests": {{...}}, "limits": {{...}}}}, got {text!r}')
    return {key: {k: str(v) for k, v in amounts.items()} for key, amounts in value.items()}


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list (``TJ_WATCH_NAMESPACES=a,b``), blanks dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _optional(text: str) -> str | None:
    """A name whose empty value switches the feature off (``TJ_BRIDGE_NAMESPACE=``)."""
    return text or None


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class Setting:
    """One of the operator's settings: its attribute, variable, flag and check."""

    attribute: str
    env: str
    check: checks.Check[object]
    flag: str | None = None
    # Whether the variable set to "" is a value (TJ_BRIDGE_NAMESPACE="": no bridge).
    empty_means: bool = False


SETTINGS = (
    Setting("namespaces", "TJ_WATCH_NAMESPACES", _names, "--namespace"),
    Setting("trainer_image", "TJ_TRAINER_IMAGE", str, "--trainer-image"),
    Setting("trainer_pull_policy", "TJ_TRAINER_PULL_POLICY", checks.choice(PULL_POLICIES)),
    Setting("allowed_images", "TJ_ALLOWED_TRAINER_IMAGES", _names),
    Setting("pvc_claim", "TJ_SHARED_PVC", str, "--pvc-claim"),
    Setting("shared_mount", "TJ_SHARED_MOUNT", str),
    Setting(
        "database_secret_name",
        "TJ_DATABASE_SECRET_NAME",
        checks.matching(
            r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
            "a Secret name (lower-case letters, digits, '-' and '.', at most 253)",
        ),
    ),
    Setting(
        "database_secret_key",
        "TJ_DATABASE_SECRET_KEY",
        checks.matching(
            r"[-._a-zA-Z0-9]{1,253}",
            "a Secret key (letters, digits, '-', '_' and '.', at most 253)",
        ),
    ),
    Setting(
        "bridge_namespace", "TJ_BRIDGE_NAMESPACE", _optional, "--bridge-namespace", empty_means=True
    ),
    Setting("default_resources", "TJ_TRAINER_RESOURCES", _resources),
    Setting(
        "cancel_grace_seconds",
        "TJ_CANCEL_GRACE_SECONDS",
        checks.seconds(),
        "--cancel-grace-seconds",
    ),
    Setting(
        "image_pull_timeout_seconds",
        "TJ_IMAGE_PULL_TIMEOUT_SECONDS",
        checks.seconds(),
        "--image-pull-timeout-seconds",
    ),
    Setting("metrics_port", "TJ_METRICS_PORT", checks.port(), "--metrics-port"),
    Setting("metrics_address", "TJ_METRICS_ADDRESS", str, "--metrics-address"),
)
"""Flags → environment → defaults (the dataclass's): every setting the operator reads."""

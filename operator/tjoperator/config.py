"""The operator's settings, from flags and environment variables."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    def from_env(cls, **overrides: object) -> OperatorConfig:
        """Defaults ← environment (``TJ_*``, ``SHARED_DATA_PATH``, ``DATABASE_URL``) ←
        ``overrides`` (command-line flags that were given)."""
        from tjcore.settings import Settings

        settings = Settings.from_env()
        env = os.environ
        values: dict[str, object] = {
            "shared_data_path": settings.shared_data_path,
            "database_url": settings.database_url,
            "trainer_image": env.get("TJ_TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE),
            "trainer_pull_policy": _pull_policy(env.get("TJ_TRAINER_PULL_POLICY")),
            "pvc_claim": env.get("TJ_SHARED_PVC", DEFAULT_PVC),
            "shared_mount": env.get("TJ_SHARED_MOUNT", DEFAULT_MOUNT),
            "database_secret_name": env.get("TJ_DATABASE_SECRET_NAME") or None,
            "database_secret_key": env.get("TJ_DATABASE_SECRET_KEY") or DEFAULT_DATABASE_SECRET_KEY,
        }
        if env.get("TJ_ALLOWED_TRAINER_IMAGES"):
            values["allowed_images"] = tuple(
                image.strip()
                for image in env["TJ_ALLOWED_TRAINER_IMAGES"].split(",")
                if image.strip()
            )
        if env.get("TJ_WATCH_NAMESPACES"):
            values["namespaces"] = tuple(
                ns.strip() for ns in env["TJ_WATCH_NAMESPACES"].split(",") if ns.strip()
            )
        if "TJ_BRIDGE_NAMESPACE" in env:
            values["bridge_namespace"] = env["TJ_BRIDGE_NAMESPACE"] or None
        if env.get("TJ_TRAINER_RESOURCES"):
            values["default_resources"] = _resources(env["TJ_TRAINER_RESOURCES"])
        if env.get("TJ_CANCEL_GRACE_SECONDS"):
            values["cancel_grace_seconds"] = _positive(
                env["TJ_CANCEL_GRACE_SECONDS"], "TJ_CANCEL_GRACE_SECONDS"
            )
        if env.get("TJ_IMAGE_PULL_TIMEOUT_SECONDS"):
            values["image_pull_timeout_seconds"] = _positive(
                env["TJ_IMAGE_PULL_TIMEOUT_SECONDS"], "TJ_IMAGE_PULL_TIMEOUT_SECONDS"
            )
        if env.get("TJ_METRICS_PORT"):
            values["metrics_port"] = _port(env["TJ_METRICS_PORT"], "TJ_METRICS_PORT")
        if env.get("TJ_METRICS_ADDRESS"):
            values["metrics_address"] = env["TJ_METRICS_ADDRESS"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("metrics_port") is not None:
            values["metrics_port"] = _port(str(values["metrics_port"]), "--metrics-port")
        if values.get("bridge_namespace") == "":  # --no-bridge, TJ_BRIDGE_NAMESPACE=""
            values["bridge_namespace"] = None
        config = cls(**values)  # type: ignore[arg-type]
        for name in ("cancel_grace_seconds", "image_pull_timeout_seconds"):
            if getattr(config, name) <= 0:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be > 0, got {getattr(config, name)}"
                )
        if config.database_secret_name and not _SECRET_NAME.fullmatch(config.database_secret_name):
            raise ValueError(
                f"TJ_DATABASE_SECRET_NAME={config.database_secret_name!r} is not a Secret name "
                "(lower-case letters, digits, '-' and '.', at most 253)"
            )
        if not _SECRET_KEY.fullmatch(config.database_secret_key):
            raise ValueError(
                f"TJ_DATABASE_SECRET_KEY={config.database_secret_key!r} is not a Secret key "
                "(letters, digits, '-', '_' and '.', at most 253)"
            )
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
        raise ValueError(f"TJ_TRAINER_RESOURCES must be JSON, got {text!r}: {err}") from None
    if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
        raise ValueError(
            f'TJ_TRAINER_RESOURCES must be {{"requests": {{...}}, "limits": {{...}}}}, got {text!r}'
        )
    return {key: {k: str(v) for k, v in amounts.items()} for key, amounts in value.items()}


def _positive(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _port(text: str, name: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{name} must be a TCP port number (1-65535), got {text!r}")
    return int(text)


_SECRET_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _pull_policy(text: str | None) -> str:
    """TJ_TRAINER_PULL_POLICY: one of Kubernetes' image pull policies (default IfNotPresent)."""
    if not text:
        return "IfNotPresent"
    if text not in PULL_POLICIES:
        raise ValueError(
            f"TJ_TRAINER_PULL_POLICY={text!r} is not an image pull policy: use one of "
            + ", ".join(PULL_POLICIES)
        )
    return text

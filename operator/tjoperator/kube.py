"""The only module that talks to the Kubernetes API (besides kopf itself).

Synchronous ``kubernetes`` client calls, each wrapped for the event loop by
:func:`call`. Errors follow the API conventions: 409 on create means "exists already",
404 on delete means "gone already", 429 and 5xx are retried with back-off, other 4xx
are raised at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

__all__ = [
    "ApiException",
    "api_message",
    "call",
    "create_job",
    "create_trainingjob",
    "delete_job",
    "job_pod_selector",
    "list_pods",
    "load_config",
    "patch_status",
    "request_cancel",
]

from tjcore.spec import GROUP, PLURAL, VERSION

T = TypeVar("T")
log = logging.getLogger(__name__)
RETRIES = 5


def api_message(err: ApiException) -> str:
    """The API server's own message of an error answer (its Status ``message``)."""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or err.reason or f"HTTP {err.status}")


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def _retrying(work: Callable[[], T]) -> T:
    for attempt in range(RETRIES):
        try:
            return work()
        except ApiException as err:
            transient = err.status == 429 or (err.status or 0) >= 500
            if not transient or attempt == RETRIES - 1:
                raise
            retry_after = (err.headers or {}).get("Retry-After")
            delay = float(retry_after) if retry_after else 0.2 * 2**attempt
            log.warning("API answered %s; retrying in %.1f s", err.status, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


async def call(work: Callable[[], T]) -> T:
    """Run a blocking client call (with transient-error retries) off the event loop."""
    return await asyncio.to_thread(_retrying, work)


def create_job(body: dict[str, Any]) -> bool:
    """Create the Job; ``False`` if it exists already (409 counts as success)."""
    namespace = body["metadata"]["namespace"]
    api = client.BatchV1Api()
    try:
        # The client accepts a plain dict body; its stubs only name the model class.
        _retrying(lambda: api.create_namespaced_job(namespace, body))  # type: ignore[arg-type]
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def delete_job(namespace: str, name: str) -> bool:
    """Delete a Job and (through the garbage collector) its pods; ``False`` if gone."""
    options = client.V1DeleteOptions(propagation_policy="Background")
    try:
        _retrying(lambda: client.BatchV1Api().delete_namespaced_job(name, namespace, body=options))
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def job_pod_selector(namespace: str, name: str) -> str | None:
    """The label selector of the Job's own pods (its ``controller-uid``, so not the pods
    of an earlier Job of the same name); ``None`` if the Job is gone."""
    try:
        response: Any = _retrying(
            lambda: client.BatchV1Api().read_namespaced_job(name, namespace, _preload_content=False)
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    job = json.loads(response.data)
    labels = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or None


def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods matching ``selector``, as the API returns them (camelCase JSON)."""
    response: Any = _retrying(
        lambda: client.CoreV1Api().list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
    )
    return list(json.loads(response.data).get("items") or [])


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    _retrying(
        lambda: client.CustomObjectsApi().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )
    )


def create_trainingjob(body: dict[str, Any]) -> bool:
    """Create a TrainingJob; ``False`` if it exists already."""
    namespace = body["metadata"]["namespace"]
    try:
        _retrying(
            lambda: client.CustomObjectsApi().create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body
            )
        )
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def request_cancel(namespace: str, name: str) -> bool:
    """Set ``spec.cancel: true``; ``False`` if the TrainingJob is gone."""
    try:
        _retrying(
            lambda: client.CustomObjectsApi().patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"spec": {"cancel": True}}
            )
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True

"""The only module that talks to the Kubernetes API (besides kopf itself).

Synchronous ``kubernetes`` client calls, each wrapped for the event loop by
:func:`call`. Errors follow the API conventions: 409 on create means "exists already",
404 on delete means "gone already", 429 and 5xx are retried with back-off, other 4xx
are raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

__all__ = [
    "ApiException",
    "call",
    "create_job",
    "create_trainingjob",
    "delete_job",
    "load_config",
    "patch_status",
    "request_cancel",
    "trainer_message",
]

from tjcore.spec import GROUP, PLURAL, VERSION

T = TypeVar("T")
log = logging.getLogger(__name__)
RETRIES = 5


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


def trainer_message(namespace: str, job: str) -> str | None:
    """The termination message of the Job's most recent failed trainer container."""
    pods = _retrying(
        lambda: client.CoreV1Api().list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    )
    messages: list[tuple[Any, str]] = []
    for pod in pods.items:
        for container in (pod.status.container_statuses or []) if pod.status else []:
            terminated = container.state.terminated if container.state else None
            if terminated and terminated.exit_code != 0 and terminated.message:
                messages.append((terminated.finished_at, terminated.message.strip()))
    if not messages:
        return None
    messages.sort(key=lambda item: str(item[0]))
    return _last_line(messages[-1][1])


def _last_line(text: str) -> str:
    """The trainer prints its error as its last line; keep that, not the traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


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

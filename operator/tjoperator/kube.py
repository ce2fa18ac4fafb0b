"""The only module that talks to the Kubernetes API (besides kopf itself).

Synchronous ``kubernetes`` client calls, one request each. Errors follow the API
conventions: 409 on create means "exists already", 404 on delete means "gone already".
Nothing here retries: a handler's call goes through :func:`call`, which turns a
transient answer (429, 5xx) into :class:`kopf.TemporaryError`, and kopf runs the handler
again (``Retry-After`` honoured up to a cap); the table bridge's calls go through
:func:`counted` and are tried again at its next pass.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

__all__ = [
    "ApiException",
    "api_message",
    "call",
    "counted",
    "create_event",
    "create_job",
    "create_trainingjob",
    "delete_job",
    "job_exists",
    "job_pod_selector",
    "list_pods",
    "load_config",
    "patch_status",
    "request_cancel",
    "retry_delay",
    "trainingjob_uids",
]

from tjcontract.names import GROUP, PLURAL, VERSION
from tjoperator import kueue, metrics

T = TypeVar("T")
# The longest wait before a handler runs again, whatever Retry-After says.
RETRY_CAP_SECONDS = 10.0
# The wait after a transient answer without Retry-After (jittered down to half of it).
RETRY_SECONDS = 2.0


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


def retry_delay(retry_after: str | None = None) -> float:
    """Seconds kopf waits before it runs a handler again after a transient answer: the
    server's ``Retry-After`` when it gives one, else a jittered :data:`RETRY_SECONDS`
    (half fixed, half random, so many objects' handlers do not retry in step); never more
    than :data:`RETRY_CAP_SECONDS`."""
    if retry_after:
        try:
            return min(RETRY_CAP_SECONDS, max(0.0, float(retry_after)))
        except ValueError:
            pass  # an HTTP date: use the jittered delay
    return RETRY_SECONDS / 2 + random.uniform(0, RETRY_SECONDS / 2)


def counted(work: Callable[[], T]) -> T:
    """Run a blocking client call once; an error answer counts in ``tj_api_errors``."""
    try:
        return work()
    except ApiException as err:
        metrics.api_error(err.status)
        raise


async def call(work: Callable[[], T]) -> T:
    """Run a blocking client call once, off the event loop. A transient answer (429, 5xx)
    becomes :class:`kopf.TemporaryError`, so kopf runs the handler again after
    :func:`retry_delay` (the one retry layer); other errors are raised as they are."""
    try:
        return await asyncio.to_thread(counted, work)
    except ApiException as err:
        if err.status != 429 and (err.status or 0) < 500:
            raise
        delay = retry_delay((err.headers or {}).get("Retry-After"))
        raise kopf.TemporaryError(
            f"the API answered {err.status} ({api_message(err)}); trying again in {delay:.1f} s",
            delay=delay,
        ) from err


def create_job(body: dict[str, Any]) -> bool:
    """Create the Job; ``False`` if it exists already (409 counts as success)."""
    namespace = body["metadata"]["namespace"]
    api = client.BatchV1Api()
    try:
        # The client accepts a plain dict body; its stubs only name the model class.
        api.create_namespaced_job(namespace, body)  # type: ignore[arg-type]
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def delete_job(namespace: str, name: str) -> bool:
    """Delete a Job and (through the garbage collector) its pods; ``False`` if gone."""
    options = client.V1DeleteOptions(propagation_policy="Background")
    try:
        client.BatchV1Api().delete_namespaced_job(name, namespace, body=options)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def set_job_suspend(namespace: str, name: str, suspend: bool) -> bool:
    """Set the Job's ``spec.suspend`` (its controller stops or starts the pods);
    ``False`` if the Job is gone."""
    try:
        client.BatchV1Api().patch_namespaced_job(name, namespace, {"spec": {"suspend": suspend}})
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def job_workload(namespace: str, job_name: str) -> dict[str, Any] | None:
    """The Kueue Workload made for Job ``namespace/job_name`` (the one it owns), ``None``
    if there is none, or if Kueue is not installed (no such resource)."""
    try:
        found: Any = client.CustomObjectsApi().list_namespaced_custom_object(
            kueue.WORKLOAD_GROUP, kueue.WORKLOAD_VERSION, namespace, kueue.WORKLOAD_PLURAL
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    for item in found.get("items") or []:
        for owner in (item.get("metadata") or {}).get("ownerReferences") or []:
            if owner.get("kind") == "Job" and owner.get("name") == job_name:
                return dict(item)
    return None


def set_workload_active(namespace: str, name: str, active: bool) -> bool:
    """Set a Kueue Workload's ``spec.active`` (false: Kueue stops its Job; true: it is
    queued again); ``False`` if the Workload is gone."""
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            kueue.WORKLOAD_GROUP,
            kueue.WORKLOAD_VERSION,
            namespace,
            kueue.WORKLOAD_PLURAL,
            name,
            {"spec": {"active": active}},
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def latest_job_event(
    namespace: str, job_name: str, reason: str, *, max_age_s: float = 300.0
) -> str | None:
    """The message of the latest Event ``reason`` about Job ``namespace/job_name`` seen in
    the last ``max_age_s`` seconds (an older one says nothing about now)."""
    found: Any = client.CoreV1Api().list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind=Job,involvedObject.name={job_name},reason={reason}",
    )
    now = datetime.datetime.now(datetime.UTC)
    latest: tuple[datetime.datetime, str] | None = None
    for event in found.items or []:
        when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
        if when is None or (now - when).total_seconds() > max_age_s:
            continue
        if latest is None or when > latest[0]:
            latest = (when, str(event.message))
    return latest[1] if latest else None


def job_pod_selector(namespace: str, name: str) -> str | None:
    """The label selector of the Job's own pods (its ``controller-uid``, so not the pods
    of an earlier Job of the same name); ``None`` if the Job is gone."""
    try:
        response: Any = client.BatchV1Api().read_namespaced_job(
            name, namespace, _preload_content=False
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
    response: Any = client.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=selector, _preload_content=False
    )
    return list(json.loads(response.data).get("items") or [])


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def create_trainingjob(body: dict[str, Any]) -> str | None:
    """Create a TrainingJob; returns its uid, or ``None`` if one of that name exists
    already (409)."""
    namespace = body["metadata"]["namespace"]
    try:
        created: Any = client.CustomObjectsApi().create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
    except ApiException as err:
        if err.status == 409:
            return None
        raise
    return str(created["metadata"]["uid"])


def read_trainingjob(namespace: str, name: str) -> dict[str, Any] | None:
    """The TrainingJob as the API returns it; ``None`` if there is none."""
    try:
        found: Any = client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return dict(found)


def trainingjob_uids(namespace: str) -> set[str]:
    """The uids of every TrainingJob of ``namespace`` (one list call)."""
    found: Any = client.CustomObjectsApi().list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    return {str(item["metadata"]["uid"]) for item in found.get("items") or []}


def job_exists(namespace: str, name: str) -> bool:
    """Whether the Job ``namespace/name`` exists (one read, not the watch's index)."""
    try:
        client.BatchV1Api().read_namespaced_job(name, namespace, _preload_content=False)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def list_trainingjob_pods(namespace: str, trainingjob: str, label: str) -> list[dict[str, Any]]:
    """Every pod of any Job of TrainingJob ``trainingjob`` (by its ``label``)."""
    return list_pods(namespace, f"{label}={trainingjob}")


def create_event(
    involved: dict[str, Any], *, type: str, reason: str, message: str, component: str
) -> None:
    """Post an Event about ``involved`` (a TrainingJob body) now, not queued: used where
    the Event must be known to be out before the operator goes on."""
    meta = involved["metadata"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": involved.get("kind", "TrainingJob"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": type,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    client.CoreV1Api().create_namespaced_event(meta["namespace"], event)  # type: ignore[arg-type]


def request_cancel(namespace: str, name: str) -> bool:
    """Set ``spec.cancel: true``; ``False`` if the TrainingJob is gone."""
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": {"cancel": True}}
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True

"""Children events: a hand-edited child is put back, and Deployment progress reaches status."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from tokenscale.adapters import logs
from tokenscale.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from tokenscale.domain import workload
from tokenscale.domain.autoscale import is_ready
from tokenscale.domain.names import SERVICE_LABEL
from tokenscale.domain.status import Event, event_message
from tokenscale.domain.workload import DEPLOYMENT
from tokenscale.domain.workload import LEADER_WORKER_SET as LWS
from tokenscale.handlers import runtime
from tokenscale.handlers.lifecycle import reconcile_latest, service_ref

log = logging.getLogger(__name__)

MANAGED = {"app.kubernetes.io/managed-by": "tokenscale"}


def _owner_name(body: kopf.Body) -> str | None:
    for owner in body["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("apiVersion", "").startswith(GROUP):
            return str(owner["name"])
    return None


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event(LWS.group, LWS.version, LWS.plural, labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def on_child(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A child changed: reconcile its owner when the child no longer holds what was applied
    (a hand edit, a deletion) or, for the Deployment or LeaderWorkerSet, when its replicas or
    rollout moved (the service's status follows them). The echo of the operator's own write is
    neither: it costs nothing. Events that come while the owner's reconcile runs are coalesced
    into one more."""
    owner, namespace = _owner_name(body), body["metadata"].get("namespace")
    if not owner or not namespace:
        return
    deleted, reg = type == "DELETED", runtime.registry(memo)
    drifted = reg.kube().observe(dict(body), deleted=deleted)
    moved = False
    if body.get("kind") in (DEPLOYMENT.kind, LWS.kind):
        moved = reg.watched.put_deployment((namespace, owner), None if deleted else dict(body))
    if not (drifted or moved):
        return
    # A deleted child is most often the garbage collector at work after its owner went: ask the
    # API server, not the watch's copy, whether the owner still exists before re-creating it.
    reg.reconciles.reconcile_once(
        (namespace, owner),
        lambda: reconcile_latest(reg, namespace, owner, fresh=deleted),
        lambda: reconcile_latest(reg, namespace, owner),
        wait=False,
    )


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def on_fill_job(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A model cache fill Job moved: the ModelCached condition and the replica gate follow it
    (the autoscale tick reads the cached state; the reconcile writes the condition)."""
    owner, namespace = _owner_name(body), body["metadata"].get("namespace")
    if not owner or not namespace:
        return
    reg = runtime.registry(memo)
    deleted = type == "DELETED"
    reg.kube().observe(dict(body), deleted=deleted)
    body_or_none = None if deleted else dict(body)
    if not reg.watched.put_job((namespace, owner), body["metadata"]["name"], body_or_none):
        return
    reg.reconciles.reconcile_once(
        (namespace, owner),
        lambda: reconcile_latest(reg, namespace, owner, fresh=deleted),
        lambda: reconcile_latest(reg, namespace, owner),
        wait=False,
    )


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def on_pod(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """Remember worker pods: the autoscaler counts ready and starting replicas from them. A
    multi-node group that loses a pod while still wanted is restarted whole by LeaderWorkerSet:
    one Warning Event says so, and the status follows the group's leader."""
    meta = body["metadata"]
    service = (meta.get("labels") or {}).get(SERVICE_LABEL)
    if not service:
        return
    key, reg = (meta["namespace"], service), runtime.registry(memo)
    deleted = type == "DELETED"
    reg.watched.put_pod(key, meta["name"], None if deleted else dict(body))
    group = workload.group_index(body)
    if group is None:
        return
    if not deleted:
        if workload.is_serving(body) and is_ready(body):
            reg.watched.group_serving(key, group)
        return
    owner = reg.watched.deployment(key)
    replicas = None if owner is None else (owner.get("spec") or {}).get("replicas")
    lost = workload.lost_group(body, replicas)
    if lost is None or not reg.watched.group_broken(key, lost):
        return
    service_body = reg.watched.service(key)
    if service_body is None or service_body["metadata"].get("deletionTimestamp"):
        return
    ref = service_ref(service_body)
    message = event_message(Event.GROUP_RESTARTED, group=lost, pod=meta["name"])
    log.warning("%s", message[2], extra=logs.about(ref.namespace, ref.name))
    try:
        reg.kube().event(ref, *message)
    except ApiException as exc:
        # A namespace being deleted takes its pods before the watch reports the service gone,
        # and refuses new Events (403): nothing is restarting there.
        if exc.status not in (403, 404):
            raise


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_service_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """Remember every InferenceService for the autoscale loop."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    runtime.registry(memo).watched.put_service(key, None if type == "DELETED" else dict(body))

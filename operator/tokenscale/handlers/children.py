"""Children events: a hand-edited child is put back, and Deployment progress reaches status."""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from tokenscale.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from tokenscale.domain.names import SERVICE_LABEL
from tokenscale.handlers import cache, runtime
from tokenscale.handlers.lifecycle import reconcile

MANAGED = {"app.kubernetes.io/managed-by": "tokenscale"}


def _owner_name(body: kopf.Body) -> str | None:
    for owner in body["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("apiVersion", "").startswith(GROUP):
            return str(owner["name"])
    return None


def _reconcile_owner(body: kopf.Body) -> None:
    owner = _owner_name(body)
    namespace = body["metadata"].get("namespace")
    if not owner or not namespace:
        return
    kube = runtime.kube()
    try:
        parent: Any = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, owner
        )
    except ApiException as exc:
        if exc.status == 404:
            return  # the owner is gone; the garbage collector removes this child
        raise
    if parent["metadata"].get("deletionTimestamp"):
        return
    with runtime.lock_for(namespace, owner):
        reconcile(kube, parent)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def on_child(body: kopf.Body, type: str | None, **_: Any) -> None:  # noqa: A002 (kopf's name)
    """Any change to a child (including deletion) re-applies its owner: server-side apply of an
    unchanged object writes nothing, so this is cheap when nothing drifted."""
    owner, namespace = _owner_name(body), body["metadata"].get("namespace")
    if owner and namespace and body.get("kind") == "Deployment":
        cache.put_deployment((namespace, owner), None if type == "DELETED" else dict(body))
    _reconcile_owner(body)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def on_pod(body: kopf.Body, type: str | None, **_: Any) -> None:  # noqa: A002 (kopf's name)
    """Remember worker pods: the autoscaler counts ready and starting replicas from them."""
    meta = body["metadata"]
    service = (meta.get("labels") or {}).get(SERVICE_LABEL)
    if service:
        key = (meta["namespace"], service)
        cache.put_pod(key, meta["name"], None if type == "DELETED" else dict(body))


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_service_event(body: kopf.Body, type: str | None, **_: Any) -> None:  # noqa: A002
    """Remember every InferenceService for the autoscale loop."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    cache.put_service(key, None if type == "DELETED" else dict(body))

"""What the watches have seen: services, their Deployments and pods. The autoscale tick reads
these instead of listing the API server for every service.

Only the fields the tick reads are kept: a full Deployment or pod with its managedFields is ten
times what the tick needs, and at 300 services the full copies were most of the operator's
memory (the 250 MB target was missed by the caches alone)."""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any

from tokenscale.domain.autoscale import replica_field_managers
from tokenscale.domain.signals import ServiceKey

_lock = threading.Lock()
_services: dict[ServiceKey, dict[str, Any]] = {}
_deployments: dict[ServiceKey, dict[str, Any]] = {}
_pods: defaultdict[ServiceKey, dict[str, dict[str, Any]]] = defaultdict(dict)
_META = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp")


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in _META if k in meta}
    if meta.get("deletionTimestamp"):
        kept["deletionTimestamp"] = meta["deletionTimestamp"]
    return kept


def _slim_service(body: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(
        {"metadata": _meta(body), "spec": body.get("spec"), "status": body.get("status")}
    )


def _slim_deployment(body: dict[str, Any]) -> dict[str, Any]:
    """spec.replicas, and who owns it (managedFields entries reduced to that one field)."""
    owners = [
        {"manager": manager, "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        for manager in replica_field_managers(body)
    ]
    spec = body.get("spec") or {}
    return {
        "metadata": {**_meta(body), "managedFields": owners},
        "spec": {"replicas": spec.get("replicas")},
    }


def _slim_pod(body: dict[str, Any]) -> dict[str, Any]:
    status = body.get("status") or {}
    return {
        "metadata": _meta(body),
        "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
        "status": {
            "phase": status.get("phase"),
            "conditions": copy.deepcopy(status.get("conditions") or []),
        },
    }


def put_service(key: ServiceKey, body: dict[str, Any] | None) -> None:
    with _lock:
        if body is None:
            _services.pop(key, None)
            _deployments.pop(key, None)
            _pods.pop(key, None)
        else:
            _services[key] = _slim_service(body)


def merge_service_status(key: ServiceKey, status: dict[str, Any]) -> None:
    """Apply our own status patch to the cached copy, so the next tick sees it even if the
    watch event is late."""
    with _lock:
        if key in _services:
            merged = {**(_services[key].get("status") or {}), **copy.deepcopy(status)}
            _services[key]["status"] = merged


def put_deployment(key: ServiceKey, body: dict[str, Any] | None) -> None:
    with _lock:
        if body is None:
            _deployments.pop(key, None)
        else:
            _deployments[key] = _slim_deployment(body)


def put_pod(key: ServiceKey, name: str, body: dict[str, Any] | None) -> None:
    with _lock:
        if body is None:
            _pods[key].pop(name, None)
        else:
            _pods[key][name] = _slim_pod(body)


def services() -> dict[ServiceKey, dict[str, Any]]:
    with _lock:
        return dict(_services)


def service(key: ServiceKey) -> dict[str, Any] | None:
    with _lock:
        return _services.get(key)


def deployment(key: ServiceKey) -> dict[str, Any] | None:
    with _lock:
        return _deployments.get(key)


def pods(key: ServiceKey) -> list[dict[str, Any]]:
    with _lock:
        return list(_pods.get(key, {}).values())

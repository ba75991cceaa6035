"""What the watches have seen: services, their Deployments and pods. The autoscale tick reads
these instead of listing the API server for every service."""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any

from tokenscale.domain.signals import ServiceKey

_lock = threading.Lock()
_services: dict[ServiceKey, dict[str, Any]] = {}
_deployments: dict[ServiceKey, dict[str, Any]] = {}
_pods: defaultdict[ServiceKey, dict[str, dict[str, Any]]] = defaultdict(dict)


def put_service(key: ServiceKey, body: dict[str, Any] | None) -> None:
    with _lock:
        if body is None:
            _services.pop(key, None)
            _deployments.pop(key, None)
            _pods.pop(key, None)
        else:
            _services[key] = copy.deepcopy(body)


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
            _deployments[key] = copy.deepcopy(body)


def put_pod(key: ServiceKey, name: str, body: dict[str, Any] | None) -> None:
    with _lock:
        if body is None:
            _pods[key].pop(name, None)
        else:
            _pods[key][name] = copy.deepcopy(body)


def services() -> dict[ServiceKey, dict[str, Any]]:
    with _lock:
        return dict(_services)


def deployment(key: ServiceKey) -> dict[str, Any] | None:
    with _lock:
        return _deployments.get(key)


def pods(key: ServiceKey) -> list[dict[str, Any]]:
    with _lock:
        return list(_pods.get(key, {}).values())

"""What the watches have seen: services, their Deployments and pods. The autoscale tick and the
reconciles read these instead of listing the API server for every service. One `WatchCache` per
operator, held by its `Registry`.

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
from tokenscale.domain.workload import GROUP_INDEX_LABEL, WORKER_INDEX_LABEL

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


# The Deployment status fields the lifecycle handler reports from (lifecycle.workload_state).
_DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "readyReplicas", "updatedReplicas")


def _slim_deployment(body: dict[str, Any]) -> dict[str, Any]:
    """spec.replicas, who owns it (managedFields entries reduced to that one field), and the
    rollout's counts."""
    owners = [
        {"manager": manager, "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        for manager in replica_field_managers(body)
    ]
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {**_meta(body), "managedFields": owners},
        "spec": {"replicas": spec.get("replicas")},
        "status": {k: status[k] for k in _DEPLOYMENT_STATUS if k in status},
    }


def _workload_view(slim: dict[str, Any] | None) -> Any:
    """What a Deployment event can change in the service's status (not its resourceVersion)."""
    if slim is None:
        return None
    return (slim["metadata"].get("generation"), slim["spec"], slim["status"])


def _slim_pod(body: dict[str, Any]) -> dict[str, Any]:
    """Phase, conditions, node, and the group labels (which pod of a group serves)."""
    status = body.get("status") or {}
    labels = (body.get("metadata") or {}).get("labels") or {}
    group = {k: labels[k] for k in (WORKER_INDEX_LABEL, GROUP_INDEX_LABEL) if k in labels}
    return {
        "metadata": {**_meta(body), **({"labels": group} if group else {})},
        "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
        "status": {
            "phase": status.get("phase"),
            "conditions": copy.deepcopy(status.get("conditions") or []),
        },
    }


def _slim_job(body: dict[str, Any]) -> dict[str, Any]:
    """What model_cache.fill_state reads: the Job's conditions and failed count."""
    status = body.get("status") or {}
    return {
        "metadata": _meta(body),
        "status": {
            "failed": status.get("failed"),
            "conditions": [
                {k: c.get(k) for k in ("type", "status", "reason", "message")}
                for c in status.get("conditions") or []
            ],
        },
    }


class WatchCache:
    """Services, Deployments, pods and fill Jobs as the watches last reported them (slimmed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[ServiceKey, dict[str, Any]] = {}
        self._deployments: dict[ServiceKey, dict[str, Any]] = {}
        self._pods: defaultdict[ServiceKey, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._jobs: defaultdict[ServiceKey, dict[str, dict[str, Any]]] = defaultdict(dict)
        # Groups seen losing a pod and not serving again since: one Event per restart, not one
        # per pod the restart deletes.
        self._broken_groups: set[tuple[ServiceKey, int]] = set()

    def put_service(self, key: ServiceKey, body: dict[str, Any] | None) -> None:
        with self._lock:
            if body is None:
                self._services.pop(key, None)
                self._deployments.pop(key, None)
                self._pods.pop(key, None)
                self._jobs.pop(key, None)
            else:
                self._services[key] = _slim_service(body)

    def merge_service_status(
        self, key: ServiceKey, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        """Apply our own status patch to the cached copy, so the next tick sees it even if the
        watch event is late; with the version the patch stored, a write preconditioned on the
        cached copy's version does not fail on our own write."""
        with self._lock:
            if key in self._services:
                merged = {**(self._services[key].get("status") or {}), **copy.deepcopy(status)}
                self._services[key]["status"] = merged
                if resource_version:
                    self._services[key]["metadata"]["resourceVersion"] = resource_version

    def put_deployment(self, key: ServiceKey, body: dict[str, Any] | None) -> bool:
        """Keep the watch's copy of the service's workload (its Deployment or LeaderWorkerSet);
        True when its replicas, generation or rollout counts changed."""
        with self._lock:
            before = _workload_view(self._deployments.get(key))
            if body is None:
                self._deployments.pop(key, None)
                return before is not None
            self._deployments[key] = _slim_deployment(body)
            return bool(_workload_view(self._deployments[key]) != before)

    def put_pod(self, key: ServiceKey, name: str, body: dict[str, Any] | None) -> None:
        with self._lock:
            if body is None:
                self._pods[key].pop(name, None)
            else:
                self._pods[key][name] = _slim_pod(body)

    def put_job(self, key: ServiceKey, name: str, body: dict[str, Any] | None) -> bool:
        """Keep a fill Job's state; True when its status changed (the gate may lift)."""
        with self._lock:
            before = self._jobs[key].get(name)
            if body is None:
                self._jobs[key].pop(name, None)
                return before is not None
            self._jobs[key][name] = _slim_job(body)
            return before is None or before["status"] != self._jobs[key][name]["status"]

    def group_broken(self, key: ServiceKey, group: int) -> bool:
        """Note that a group lost a pod; True the first time since it last served."""
        with self._lock:
            first = (key, group) not in self._broken_groups
            self._broken_groups.add((key, group))
            return first

    def group_serving(self, key: ServiceKey, group: int) -> None:
        with self._lock:
            self._broken_groups.discard((key, group))

    def job(self, key: ServiceKey, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._jobs.get(key, {}).get(name)

    def services(self) -> dict[ServiceKey, dict[str, Any]]:
        with self._lock:
            return dict(self._services)

    def service(self, key: ServiceKey) -> dict[str, Any] | None:
        with self._lock:
            return self._services.get(key)

    def deployment(self, key: ServiceKey) -> dict[str, Any] | None:
        with self._lock:
            return self._deployments.get(key)

    def pods(self, key: ServiceKey) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pods.get(key, {}).values())

"""Which Kubernetes workload runs a service's replicas, and how its pods are told apart.

A replica on one node is a Deployment pod. A replica across nodes is a LeaderWorkerSet group
(sigs.k8s.io/lws v0.7.0): a leader pod that serves and `plan.nodes - 1` headless worker pods.
Both are scaled through their scale subresource, and both report `replicas`, `readyReplicas`
and `updatedReplicas` in their status, counted in replicas (groups for a LeaderWorkerSet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tokenscale.domain.capacity import Plan


@dataclass(frozen=True)
class WorkloadKind:
    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


DEPLOYMENT = WorkloadKind("apps", "v1", "Deployment", "deployments")
LEADER_WORKER_SET = WorkloadKind(
    "leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet", "leaderworkersets"
)

# Set by LWS on every pod of a group (api/leaderworkerset/v1/leaderworkerset_types.go): the
# worker index is "0" on the leader (its controller) and 1.. on workers (its pod webhook); the
# group index is the replica the pod belongs to.
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"


def kind_for(plan: Plan) -> WorkloadKind:
    return DEPLOYMENT if plan.nodes == 1 else LEADER_WORKER_SET


def _labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def is_serving(pod: Mapping[str, Any]) -> bool:
    """A pod that serves requests: a Deployment's pod, or a group's leader (a headless worker
    rank has no gateway, no probes and no metrics)."""
    return _labels(pod).get(WORKER_INDEX_LABEL, "0") == "0"


def serving_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One pod per replica: the pods that serve. The autoscaler counts ready and starting
    replicas from these, so a group counts once, through its leader."""
    return [p for p in pods if is_serving(p)]


def replica_of(pod: Mapping[str, Any]) -> str:
    """The replica a pod belongs to: its group index, or the pod itself outside a group."""
    labels = _labels(pod)
    group = labels.get(GROUP_INDEX_LABEL)
    return f"group-{group}" if group is not None else str((pod.get("metadata") or {}).get("name"))


def group_index(pod: Mapping[str, Any]) -> int | None:
    value = _labels(pod).get(GROUP_INDEX_LABEL)
    return int(value) if value is not None and value.isdigit() else None


def lost_group(pod: Mapping[str, Any], replicas: int | None) -> int | None:
    """The group a deleted pod leaves broken: its group index when that group is still wanted
    (index below the workload's replicas), None for a scale-down, a deletion of the whole
    workload (`replicas` unknown) or a pod outside any group."""
    index = group_index(pod)
    if index is None or replicas is None or index >= replicas:
        return None
    return index

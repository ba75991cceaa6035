"""Pure pieces of the lifecycle reconcile: parse the spec, pick the cap and replica bounds, read
the workload's state from the Deployment and pod objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.api.v1alpha1.errors import problems as spec_problems
from tokenscale.domain.capacity import Plan
from tokenscale.domain.status import WorkloadState
from tokenscale.domain.workload import LEADER_WORKER_SET, replica_of
from tokenscale_contract.extra_args import validate_extra_args


@dataclass(frozen=True)
class SpecError:
    """A spec the API server accepted but the operator cannot use (an older CRD, or a field
    only the operator can check)."""

    message: str


def parse_spec(raw: dict[str, Any]) -> InferenceServiceSpec | SpecError:
    """Validate with the same models the CRD was generated from; name each bad field."""
    try:
        spec = InferenceServiceSpec.model_validate(raw)
    except ValidationError as exc:
        return SpecError("; ".join(spec_problems(exc)))
    # Flags the planner owns (--tensor-parallel-size, ...) are only known to the worker contract.
    problems = validate_extra_args(spec.engine.extra_args)
    return SpecError("; ".join(problems)) if problems else spec


def concurrency_cap(spec: InferenceServiceSpec, plan: Plan, status: dict[str, Any]) -> int:
    """The cap in force: the autoscaler's last choice (kept in status) when batch tuning is on,
    bounded by the spec and the plan's KV room; otherwise the plan's maximum."""
    ceiling = min(plan.max_concurrency, spec.scaling.batch.max_concurrency)
    floor = min(spec.scaling.batch.min_concurrency, ceiling)
    previous = (status.get("plan") or {}).get("concurrencyCap")
    if spec.scaling.batch.enabled and isinstance(previous, int):
        return max(floor, min(ceiling, previous))
    return ceiling


def bounded_replicas(
    spec: InferenceServiceSpec, current: int | None, limit: int | None = None
) -> int | None:
    """The replica count the lifecycle handler enforces, or None to leave it to the autoscaler.

    A new Deployment starts at minReplicas; an existing one is only pulled back inside
    [minReplicas, maxReplicas]. `off` pins minReplicas; `advisory` never touches replicas once
    the Deployment exists. `limit` (the model cache's fill gate) caps what is asked for: a
    service whose weights are still being copied starts one replica, not minReplicas.
    """
    scaling = spec.scaling
    cap = scaling.max_replicas if limit is None else limit
    if current is None:
        return min(scaling.min_replicas, cap)
    if scaling.mode == "advisory":
        return None
    if scaling.mode == "off":
        pinned = min(scaling.min_replicas, cap)
        return pinned if current != pinned else None
    bounded = min(max(scaling.min_replicas, min(scaling.max_replicas, current)), cap)
    return bounded if bounded != current else None


def autoscaler_after_scale(status: dict[str, Any], replicas: int) -> dict[str, Any] | None:
    """status.autoscaler once the lifecycle handler has set `replicas` itself (the bounds moved,
    or the model cache's gate lifted): the count tokenscale last applied, so the autoscaler does
    not take its own operator's write for another client's. The scale subresource leaves no
    managedFields entry for spec.replicas, so only this record tells the two apart. None while
    the autoscaler has not ticked yet (it has nothing to compare)."""
    autoscaler = status.get("autoscaler")
    if not isinstance(autoscaler, dict):
        return None
    return {**autoscaler, "lastAppliedReplicas": replicas}


def _unschedulable(pod: dict[str, Any]) -> str | None:
    if (pod.get("status") or {}).get("phase") != "Pending":
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "Unschedulable")
    return None


def workload_state(deployment: dict[str, Any] | None, pods: list[dict[str, Any]]) -> WorkloadState:
    """Summarize the workload (a Deployment, or a LeaderWorkerSet whose counts are groups) and
    its pods (terminating pods do not count). A group with any pod the scheduler found no room
    for is one unschedulable replica: the group cannot start without it."""
    if deployment is None:
        return WorkloadState(exists=False)
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    stuck = {replica_of(p): r for p in live if (r := _unschedulable(p))}
    reasons = list(stuck.values())
    # LeaderWorkerSet v0.7.0 reports no observedGeneration: its counts are all there is.
    observed = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    if deployment.get("kind") == LEADER_WORKER_SET.kind:
        observed = True
    return WorkloadState(
        exists=True,
        generation_observed=observed,
        replicas=int(spec.get("replicas") or 0),
        current=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        unschedulable=len(reasons),
        unschedulable_message=reasons[0] if reasons else "",
    )

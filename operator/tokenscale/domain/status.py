"""Status conditions from what was observed of the children and what was decided. Pure: the
caller passes `now` as an RFC 3339 string and the previous conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenscale.domain.capacity import Infeasible, Plan

Conditions = list[dict[str, Any]]


@dataclass(frozen=True)
class WorkloadState:
    """What the Deployment and its pods report."""

    exists: bool = False
    generation_observed: bool = True  # deployment controller saw the latest template
    replicas: int = 0  # spec.replicas
    current: int = 0  # status.replicas
    ready: int = 0
    updated: int = 0
    unschedulable: int = 0
    unschedulable_message: str = ""


def set_condition(
    previous: Conditions,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> Conditions:
    """Replace one condition, keeping lastTransitionTime when the status did not change."""
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    new = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    rest = [c for c in previous if c.get("type") != type_]
    return sorted([*rest, new], key=lambda c: str(c["type"]))


def plan_summary(plan: Plan) -> str:
    quant = "bf16" if plan.quantization == "none" else plan.quantization
    text = (
        f"{plan.model_name} {quant} on {plan.tensor_parallel}x{plan.gpu}: "
        f"{plan.weights_gib:.1f} GiB weights, {plan.kv_cache_tokens} KV-cache tokens, "
        f"up to {plan.max_concurrency} concurrent requests"
    )
    return text + "".join(f"; {note}" for note in plan.notes)


def planned_conditions(
    previous: Conditions, result: Plan | Infeasible, now: str, generation: int
) -> Conditions:
    """Planned (and, when infeasible, Ready=False with the planner's reason)."""
    if isinstance(result, Infeasible):
        conds = set_condition(
            previous, "Planned", "False", "Infeasible", result.reason, now, generation
        )
        return set_condition(conds, "Ready", "False", "Infeasible", result.reason, now, generation)
    return set_condition(
        previous, "Planned", "True", "Planned", plan_summary(result), now, generation
    )


def workload_conditions(
    previous: Conditions, state: WorkloadState, now: str, generation: int
) -> Conditions:
    """Ready, Progressing and CapacityLimited from the Deployment and its pods."""
    conds = previous
    if state.ready > 0:
        ready = ("True", "Serving", f"{state.ready} of {state.replicas} replicas ready")
    elif state.replicas == 0 and state.exists:
        ready = ("False", "ScaledToZero", "no replicas requested")
    else:
        ready = ("False", "NoReadyReplicas", f"0 of {state.replicas} replicas ready")
    conds = set_condition(conds, "Ready", *ready, now, generation)
    rolling = (
        not state.generation_observed
        or state.updated < state.replicas
        or state.ready < state.replicas
        or state.current > state.replicas
    )
    progress = (
        ("True", "RollingOut", f"{state.updated} updated, {state.ready} ready of {state.replicas}")
        if rolling
        else ("False", "Stable", f"all {state.replicas} replicas updated and ready")
    )
    conds = set_condition(conds, "Progressing", *progress, now, generation)
    if state.unschedulable:
        fit = state.replicas - state.unschedulable
        message = (
            f"{fit} of {state.replicas} replicas fit on schedulable GPUs; "
            f"{state.unschedulable} pods Pending: {state.unschedulable_message}"
        )
        return set_condition(
            conds, "CapacityLimited", "True", "Unschedulable", message, now, generation
        )
    return set_condition(
        conds,
        "CapacityLimited",
        "False",
        "AllScheduled",
        "every replica is scheduled",
        now,
        generation,
    )


def plan_status(plan: Plan, concurrency_cap: int) -> dict[str, Any]:
    """status.plan."""
    return {
        "quantization": plan.quantization,
        "tensorParallel": plan.tensor_parallel,
        "gpusPerReplica": plan.gpus_per_replica,
        "weightsGiB": plan.weights_gib,
        "kvCacheTokens": plan.kv_cache_tokens,
        "maxConcurrency": plan.max_concurrency,
        "concurrencyCap": concurrency_cap,
    }

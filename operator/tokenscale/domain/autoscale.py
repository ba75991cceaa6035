"""Pure pieces of the autoscale tick around `decide()`: what the cluster says about a workload,
whether someone else is writing the replica count, how many replicas the GPUs can hold, and the
status a decision produces."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import slo_reach
from tokenscale.domain import status as conditions
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import FIELD_MANAGER, GPU_RESOURCE
from tokenscale.domain.observation import Decision, Observation
from tokenscale.domain.placement import DEFAULT_PLACEMENT, GFD_COUNT_LABEL, GpuPlacement
from tokenscale.domain.signals import WorkloadFacts

MAX_DECISIONS = 10
# A foreign writer's replica count must stand this long before tokenscale adopts it and resumes.
CONFLICT_QUIET_S = 300.0


def epoch(timestamp: str | None) -> float | None:
    """RFC 3339 (as the API server writes it) to epoch seconds."""
    if not timestamp:
        return None
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def workload_facts(
    deployment: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    current_cap: int | None,
    schedulable: int | None,
) -> WorkloadFacts:
    """Ready pods, the replica count asked for, and when each not-yet-ready pod was created."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    starting = tuple(
        sorted(
            t
            for t in (
                epoch((p.get("metadata") or {}).get("creationTimestamp"))
                for p in live
                if not is_ready(p)
            )
            if t is not None
        )
    )
    replicas = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    return WorkloadFacts(
        ready_replicas=sum(1 for p in live if is_ready(p)),
        current_replicas=replicas,
        starting_since=starting,
        current_cap=current_cap,
        schedulable_replicas=schedulable,
    )


@dataclass(frozen=True)
class GpuNode:
    kind: str
    allocatable: int
    requested: int

    @property
    def free(self) -> int:
        return max(0, self.allocatable - self.requested)


def _node_gpus(node: Mapping[str, Any]) -> int:
    """GPUs the node offers: its allocatable nvidia.com/gpu (what the scheduler counts), else
    the nvidia.com/gpu.count label GPU Feature Discovery writes (a node whose device plugin has
    not reported yet). A 4-GPU L4 node counts 4 whatever the catalog's usual 8."""
    allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)
    if allocatable is not None:
        return int(allocatable)
    count = ((node.get("metadata") or {}).get("labels") or {}).get(GFD_COUNT_LABEL, "0")
    return int(count) if str(count).isdigit() else 0


def gpu_nodes(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    placement: GpuPlacement = DEFAULT_PLACEMENT,
) -> list[GpuNode]:
    """Free GPUs per schedulable node, from node allocatable minus what bound pods request; a
    node's GPU kind is read from the label the pods select on (placement)."""
    requested: dict[str, int] = {}
    for pod in pods:
        spec, phase = pod.get("spec") or {}, (pod.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            continue
        gpus = sum(
            int(((c.get("resources") or {}).get("requests") or {}).get(GPU_RESOURCE, 0))
            for c in spec.get("containers") or []
        )
        requested[spec["nodeName"]] = requested.get(spec["nodeName"], 0) + gpus
    found = []
    for node in nodes:
        meta, spec = node.get("metadata") or {}, node.get("spec") or {}
        kind = placement.kind_of(meta.get("labels") or {})
        if not kind or spec.get("unschedulable"):
            continue
        found.append(GpuNode(kind, _node_gpus(node), requested.get(meta.get("name", ""), 0)))
    return found


def schedulable_replicas(nodes: Iterable[GpuNode], plan: Plan, scheduled_own: int) -> int:
    """Replicas the cluster can hold: ours already placed plus what free GPUs fit, node by node
    (tensor-parallel replicas never span nodes). Two 8-GPU nodes with 3 and 6 free, 4 GPUs per
    replica, 2 placed -> 2 + 0 + 1 = 3. A multi-node replica is a group of `plan.nodes` pods of
    `plan.tensor_parallel` GPUs each, started all or nothing: only whole groups of nodes with
    room for a pod count (3 free 8-GPU nodes, 2 nodes per group -> 1)."""
    kind = [n for n in nodes if n.kind == plan.gpu]
    if plan.nodes > 1:
        hosts = sum(n.free // plan.tensor_parallel for n in kind)
        return scheduled_own + hosts // plan.nodes
    fits = sum(n.free // plan.gpus_per_replica for n in kind)
    return scheduled_own + fits


def foreign_replica_writer(deployment: Mapping[str, Any], last_applied: int | None) -> str | None:
    """Who else set spec.replicas, when it differs from what tokenscale last set. When
    tokenscale alone owns the field (the lifecycle handler pulling replicas into the new
    [minReplicas, maxReplicas], or a scale whose status save was lost) nobody else wrote it."""
    replicas = (deployment.get("spec") or {}).get("replicas")
    if last_applied is None or replicas == last_applied:
        return None
    owners = replica_field_managers(deployment)
    foreign = [o for o in owners if o != FIELD_MANAGER]
    if foreign:
        return foreign[0]
    return None if owners else "another client"


def replica_field_managers(deployment: Mapping[str, Any]) -> list[str]:
    """The field managers that own the Deployment's spec.replicas (from managedFields)."""
    return [
        str(entry.get("manager") or "another client")
        for entry in (deployment.get("metadata") or {}).get("managedFields") or []
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]


def announce_recommendation(recommended: int, current: int, previous: int | None) -> bool:
    """Advisory mode posts a Recommendation Event when the recommended count differs from the
    replicas AND from the last recommendation: one Event per new advice, not one per tick (at a
    5 s tick an unchanged "scale 1 -> 5" would otherwise post 12 Events a minute)."""
    return recommended != current and recommended != previous


def slo_condition(
    spec: InferenceServiceSpec, obs: Observation, metrics_missing: bool = False
) -> tuple[conditions.Condition, dict[str, object]]:
    """SLOMet from the observed percentiles: the template and its fields. Without metrics the
    objective is unknown (NoMetrics), not met by default and not "no traffic"."""
    if metrics_missing:
        return conditions.Condition.SLO_NO_METRICS, {}
    if obs.ttft_s is None and obs.itl_s is None:
        return conditions.Condition.SLO_NO_TRAFFIC, {}
    pct = f"p{spec.slo.percentile:g}"
    # TTFT is read over the requests in reach only (domain.ttft_objective): say so.
    scope = ""
    if obs.out_of_reach_share > 0:
        scope = f" over the {1 - obs.out_of_reach_share:.0%} of requests in reach"
    misses = []
    objective = obs.ttft_objective(spec.slo)
    if obs.ttft_s is not None and obs.ttft_s > objective:
        misses.append(f"TTFT {pct} {obs.ttft_s:.2f} s{scope} > {objective:.3g} s")
    if obs.itl_s is not None and obs.itl_s > spec.slo.itl_seconds:
        misses.append(f"ITL {pct} {obs.itl_s * 1000:.0f} ms > {spec.slo.itl_seconds * 1000:.0f} ms")
    if misses:
        return conditions.Condition.SLO_MISSED, {"misses": "; ".join(misses)}
    ttft = "n/a" if obs.ttft_s is None else f"{obs.ttft_s:.2f} s{scope}"
    itl = "n/a" if obs.itl_s is None else f"{obs.itl_s * 1000:.0f} ms"
    return conditions.Condition.SLO_MET, {"pct": pct, "ttft": ttft, "itl": itl}


def slo_column(condition: conditions.Condition) -> str:
    """status.sloMet, the SLO-MET column: True or False, else why it cannot say (NoMetrics,
    NoTraffic), so an empty TTFT-P95 column never goes unexplained."""
    template = condition.value
    return template.status if template.status != "Unknown" else template.reason


def metrics_condition(
    obs: Observation, replicas: int, outage: conditions.MetricsOutage | None
) -> tuple[conditions.Condition, dict[str, object]]:
    """MetricsAvailable: read, Prometheus unavailable (why, and what to check), or no series."""
    if outage is not None:
        fields = {"url": outage.url, "problem": outage.what(), "remedy": outage.remedy()}
        return conditions.Condition.PROMETHEUS_UNAVAILABLE, {**fields, "replicas": replicas}
    if obs.sampled_at is None:
        return conditions.Condition.NO_SERIES, {"replicas": replicas}
    return conditions.Condition.METRICS, {}


def observed_status(obs: Observation, now: float) -> dict[str, Any]:
    figures = {
        "ttftSeconds": obs.ttft_s,
        "itlSeconds": obs.itl_s,
        "e2eSeconds": obs.e2e_s,
        "arrivalRate": obs.arrival_rate,
        "running": obs.running,
        "waiting": obs.waiting,
        "kvCacheUsage": obs.kv_cache_usage,
    }
    # Three significant figures: enough to read, and steady load does not rewrite status. A
    # missing figure is sent as null, which deletes the stored one (a merge patch keeps what it
    # does not name): without metrics TTFT-P95 goes empty rather than show the last reading.
    rounded = {k: None if v is None else float(f"{v:.3g}") for k, v in figures.items()}
    return {**rounded, "sampledAt": rfc3339(now)}


def decision_record(decision: Decision, now: float) -> dict[str, Any]:
    return {
        "time": rfc3339(now),
        "replicas": decision.replicas,
        "previousReplicas": decision.previous_replicas,
        "concurrencyCap": decision.concurrency_cap,
        "applied": decision.applied,
        "reason": decision.reason,
    }


def worth_recording(decision: Decision, history: list[dict[str, Any]]) -> bool:
    """A decision enters lastDecisions when it changes the replica count or the cap (or is the
    first): a hold whose figures moved is not news, and recording it would write status on
    every tick."""
    if not history:
        return True
    last = history[-1]
    decided = (decision.replicas, decision.concurrency_cap)
    return decided != (last.get("replicas"), last.get("concurrencyCap"))


def new_decision(old_status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any] | None:
    """The decision record a tick's patch adds to lastDecisions, if any (the one log line)."""
    before = list(old_status.get("lastDecisions") or [])
    after = list(patch.get("lastDecisions") or [])
    return after[-1] if after and (not before or after[-1] != before[-1]) else None


def tick_status(
    spec: InferenceServiceSpec,
    old_status: Mapping[str, Any],
    decision: Decision,
    obs: Observation,
    now: float,
    generation: int,
    outage: conditions.MetricsOutage | None = None,
    reach: slo_reach.SloReach | None = None,
) -> dict[str, Any]:
    """The status patch after one decision; SLOFeasible too with `reach` (a tick with metrics)."""
    stamp = rfc3339(now)
    conds: conditions.Conditions = list(old_status.get("conditions") or [])
    metrics, fields = metrics_condition(obs, decision.replicas, outage)
    conds = conditions.set_condition(conds, metrics, stamp, generation, **fields)
    slo, fields = slo_condition(spec, obs, metrics is not conditions.Condition.METRICS)
    conds = conditions.set_condition(conds, slo, stamp, generation, **fields)
    if reach is not None:
        feasible, fields = slo_reach.condition(reach, spec.slo.percentile)
        conds = conditions.set_condition(conds, feasible, stamp, generation, **fields)
    if decision.capacity_limited:
        conds = conditions.set_condition(
            conds,
            conditions.Condition.NOT_ENOUGH_GPUS,
            stamp,
            generation,
            shortfall=decision.capacity_message.removeprefix("capacity-limited: "),
            replicas=decision.replicas,
        )
    conds = conditions.set_condition(conds, conditions.Condition.SOLE_WRITER, stamp, generation)
    history = list(old_status.get("lastDecisions") or [])
    if worth_recording(decision, history):
        history = [*history, decision_record(decision, now)][-MAX_DECISIONS:]
    plan = dict(old_status.get("plan") or {})
    if plan:
        plan["concurrencyCap"] = decision.concurrency_cap
    state = {
        **decision.state.to_dict(),
        "lastAppliedReplicas": decision.replicas
        if decision.applied or decision.replicas == decision.previous_replicas
        else (old_status.get("autoscaler") or {}).get("lastAppliedReplicas"),
    }
    patch: dict[str, Any] = {
        "conditions": conds,
        "desiredReplicas": decision.replicas,
        "sloMet": slo_column(slo),
        "observed": observed_status(obs, now),
        "lastDecisions": history,
        "autoscaler": state,
    }
    if plan:
        patch["plan"] = plan
    return patch


def _without_nulls(value: Any) -> Any:
    """What the API server keeps of a merge patch: a null deletes its key."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def status_changed(old_status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether a patch says anything new (the sample time alone is not news): at 300 services a
    write per service per tick would be 20 writes/s for nothing. A null in the patch equals an
    absent key in the stored status (`autoscaler.lastScaleAt: null` is stored as no key, and
    compared as-is it read as news on every tick)."""
    patch, old_status = _without_nulls(patch), _without_nulls(old_status)
    for key, value in patch.items():
        old = old_status.get(key)
        if key == "observed" and isinstance(value, Mapping) and isinstance(old, Mapping):
            if {k: v for k, v in value.items() if k != "sampledAt"} != {
                k: v for k, v in old.items() if k != "sampledAt"
            }:
                return True
            continue
        if key == "conditions":
            if _conditions_key(value) != _conditions_key(old or []):
                return True
            continue
        if value != old:
            return True
    return False


def _conditions_key(conds: Any) -> list[tuple[Any, ...]]:
    return sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds
    )


def conflict_status(
    old_status: Mapping[str, Any], writer: str, replicas: int, now: float, generation: int
) -> dict[str, Any]:
    """Stop and say so: someone else is writing the replica count."""
    conds = conditions.set_condition(
        list(old_status.get("conditions") or []),
        conditions.Condition.FOREIGN_WRITER,
        rfc3339(now),
        generation,
        writer=writer,
        replicas=replicas,
        quiet=f"{CONFLICT_QUIET_S:.0f}",
    )
    state = dict(old_status.get("autoscaler") or {})
    seen = state.get("conflict") or {}
    if seen.get("replicas") != replicas:
        seen = {"replicas": replicas, "since": now, "writer": writer}
    state["conflict"] = seen
    return {"conditions": conds, "autoscaler": state}


def conflict_resolved(old_status: Mapping[str, Any], replicas: int, now: float) -> bool:
    """The foreign count has stood still long enough: adopt it and resume."""
    seen = (old_status.get("autoscaler") or {}).get("conflict") or {}
    return bool(
        seen.get("replicas") == replicas and now - float(seen.get("since", now)) >= CONFLICT_QUIET_S
    )

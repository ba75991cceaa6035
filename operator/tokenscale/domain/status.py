"""Status conditions from what was observed of the children and what was decided, and every
message tokenscale shows a person (conditions and Events), each from one template below. Pure:
the caller passes `now` as an RFC 3339 string and the previous conditions.

A message says, in one sentence, what happened, what tokenscale did about it and what the user
can do. docs/operations.md lists every template; tests/unit/test_conditions_docs.py keeps the
two equal, so a new reason cannot ship undocumented.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tokenscale.domain.capacity import Infeasible, Plan

Conditions = list[dict[str, Any]]


@dataclass(frozen=True)
class Template:
    """One condition (type, status, reason) or Event (type Normal/Warning, reason) and its
    message, a `str.format` template whose {fields} the caller fills."""

    kind: str  # a condition type, or "Event"
    status: str  # True/False/Unknown for a condition; Normal/Warning for an Event
    reason: str
    text: str

    def message(self, **fields: object) -> str:
        return self.text.format(**fields)


class Condition(enum.Enum):
    """Every condition tokenscale writes."""

    PLANNED = Template("Planned", "True", "Planned", "{plan}")
    PLANNED_INFEASIBLE = Template(
        "Planned", "False", "Infeasible", "{problem}; nothing is deployed until the spec changes"
    )
    PLANNED_INVALID = Template(
        "Planned",
        "False",
        "InvalidSpec",
        "{problems}; nothing is created or changed until the spec is fixed",
    )
    READY = Template("Ready", "True", "Serving", "{ready} of {replicas} replicas ready")
    READY_SCALED_TO_ZERO = Template(
        "Ready",
        "False",
        "ScaledToZero",
        "no replicas requested; the service serves again once replicas are asked for",
    )
    READY_NONE = Template(
        "Ready",
        "False",
        "NoReadyReplicas",
        "0 of {replicas} replicas ready; tokenscale waits for the workers to start (kubectl "
        "describe pod on them says what holds them)",
    )
    READY_INFEASIBLE = Template(
        "Ready", "False", "Infeasible", "{problem}; nothing is deployed until the spec changes"
    )
    READY_INVALID = Template(
        "Ready",
        "False",
        "InvalidSpec",
        "{problems}; nothing is created or changed until the spec is fixed",
    )
    PROGRESSING = Template(
        "Progressing",
        "True",
        "RollingOut",
        "{updated} updated, {ready} ready of {replicas} replicas",
    )
    STABLE = Template("Progressing", "False", "Stable", "all {replicas} replicas updated and ready")
    UNSCHEDULABLE = Template(
        "CapacityLimited",
        "True",
        "Unschedulable",
        "{fit} of {replicas} replicas fit on schedulable GPUs and {pending} pods are Pending "
        "({scheduler}); add GPU nodes of the planned kind or lower scaling.maxReplicas",
    )
    NOT_ENOUGH_GPUS = Template(
        "CapacityLimited",
        "True",
        "NotEnoughGPUs",
        "{shortfall}, so tokenscale asks for {replicas}; add GPU nodes of the planned kind "
        "to serve the whole load",
    )
    ALL_SCHEDULED = Template(
        "CapacityLimited", "False", "AllScheduled", "every replica is scheduled"
    )
    METRICS = Template(
        "MetricsAvailable", "True", "Scraped", "latency and load read from Prometheus"
    )
    PROMETHEUS_UNAVAILABLE = Template(
        "MetricsAvailable",
        "False",
        "PrometheusUnavailable",
        "Prometheus at {url} {problem}; replicas held at {replicas}; {remedy}",
    )
    NO_SERIES = Template(
        "MetricsAvailable",
        "False",
        "NoSeries",
        "Prometheus has no series for this service yet; replicas held at {replicas}; check that "
        "Prometheus scrapes its pods (PodMonitor or scrape configuration)",
    )
    SLO_MET = Template(
        "SLOMet",
        "True",
        "WithinObjective",
        "TTFT {pct} {ttft}, ITL {pct} {itl}, within the objective",
    )
    SLO_MISSED = Template(
        "SLOMet",
        "False",
        "ObjectiveMissed",
        "{misses}; status.lastDecisions says what the autoscaler does about it",
    )
    SLO_NO_TRAFFIC = Template(
        "SLOMet",
        "Unknown",
        "NoTraffic",
        "no requests finished in the Prometheus window; latency is measured once traffic arrives",
    )
    SLO_NO_METRICS = Template(
        "SLOMet",
        "Unknown",
        "NoMetrics",
        "latency unknown while metrics are missing; the MetricsAvailable condition says why",
    )
    SLO_EVERY_PROMPT = Template(
        "SLOFeasible",
        "True",
        "EveryPrompt",
        "an idle replica prefills every prompt up to maxModelLen ({max_prompt} tokens) within "
        "the TTFT objective ({ttft} s)",
    )
    SLO_WITHIN_TOLERANCE = Template(
        "SLOFeasible",
        "True",
        "WithinTolerance",
        "prompts over {longest} tokens take {prefill} s or more to prefill even on an idle "
        "replica, beyond the TTFT objective ({ttft} s); {observed}, within the {tolerated} the "
        "p{pct} objective allows",
    )
    SLO_OUT_OF_REACH = Template(
        "SLOFeasible",
        "False",
        "PromptsOutOfReach",
        "{share} of the requests in the window have prompts over {longest} tokens, which take "
        "{prefill} s or more to prefill even on an idle replica, beyond the TTFT objective "
        "({ttft} s): more than the {tolerated} the p{pct} objective allows, whatever the "
        "replica count; relax slo.ttftSeconds, give long prompts more time with "
        "slo.ttftSecondsPer1kPromptTokens, lower model.maxModelLen, or plan more GPUs per "
        "replica",
    )
    SOLE_WRITER = Template(
        "ScalingConflict", "False", "SoleWriter", "tokenscale alone sets replicas"
    )
    FOREIGN_WRITER = Template(
        "ScalingConflict",
        "True",
        "ForeignWriter",
        "{writer} set replicas to {replicas}; tokenscale stopped scaling this service; remove "
        "the other autoscaler, or leave the count alone for {quiet} s to hand it back",
    )
    MODEL_CACHED = Template(
        "ModelCached",
        "True",
        "Filled",
        "{message}: the weights are on claim {claim} ({key}); replicas read them from there",
    )
    MODEL_FILLING = Template(
        "ModelCached",
        "False",
        "Filling",
        "{message}; replicas stay at {limit} until the copy on claim {claim} is complete",
    )
    MODEL_FILL_FAILED = Template(
        "ModelCached",
        "False",
        "FillFailed",
        "{message}; replicas stay at {limit} (claim {claim})",
    )


class Event(enum.Enum):
    """Every Event tokenscale posts on an InferenceService."""

    SCALED_UP = Template("Event", "Normal", "ScaledUp", "{reason}")
    SCALED_DOWN = Template("Event", "Normal", "ScaledDown", "{reason}")
    RECOMMENDATION = Template(
        "Event",
        "Normal",
        "Recommendation",
        "advisory mode, replicas untouched: {reason}; set scaling.mode to auto to act on it",
    )
    INVALID_SPEC = Template(
        "Event",
        "Warning",
        "InvalidSpec",
        "{problems}; nothing is created or changed until the spec is fixed",
    )
    INFEASIBLE = Template(
        "Event", "Warning", "Infeasible", "{problem}; nothing is deployed until the spec changes"
    )
    CAPACITY_LIMITED = Template("Event", "Warning", "CapacityLimited", "{message}")
    MODEL_FILL_FAILED = Template("Event", "Warning", "ModelFillFailed", "{message}")
    SLO_OUT_OF_REACH = Template("Event", "Warning", "SLOOutOfReach", "{message}")
    GROUP_RESTARTED = Template(
        "Event",
        "Warning",
        "GroupRestarted",
        "replica group {group} lost pod {pod}; LeaderWorkerSet recreates the whole group "
        "(restartPolicy RecreateGroupOnPodRestart: one lost rank stops its pipeline), which "
        "serves again after a cold start",
    )


class PrometheusProblem(enum.Enum):
    """Why Prometheus gave no answer: (what happened, what the user can do). The adapter picks
    one from the exception; the PrometheusUnavailable message carries both."""

    REFUSED = (
        "did not answer (connection refused)",
        "check that Prometheus runs and prometheus.url points at it",
    )
    TIMEOUT = (
        "did not answer within {timeout} s (timeout)",
        "check that Prometheus is up and reachable, or raise prometheus.timeoutSeconds",
    )
    DNS = (
        "could not be found (DNS lookup of {host} failed)",
        "check the host name in prometheus.url",
    )
    UNREACHABLE = (
        "could not be reached ({cause})",
        "check the network path and the scheme (http or https) in prometheus.url",
    )
    HTTP_STATUS = (
        "answered HTTP {status}",
        "the operator's log at debug level holds Prometheus's answer",
    )
    BAD_RESPONSE = (
        "answered with something that is not a Prometheus query result",
        "point prometheus.url at the Prometheus HTTP API (the URL without /api/v1)",
    )


@dataclass(frozen=True)
class MetricsOutage:
    """Prometheus gave no answer this tick: where, why, and the problem's own fields."""

    url: str
    problem: PrometheusProblem
    fields: tuple[tuple[str, str], ...] = ()

    def what(self) -> str:
        return self.problem.value[0].format(**dict(self.fields))

    def remedy(self) -> str:
        return self.problem.value[1]

    def summary(self) -> str:
        """`Prometheus at http://p:9090 did not answer (connection refused)`."""
        return f"Prometheus at {self.url} {self.what()}"


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
    condition: Condition,
    now: str,
    generation: int,
    **fields: object,
) -> Conditions:
    """Replace one condition, keeping lastTransitionTime when the status did not change."""
    template = condition.value
    old = next((c for c in previous if c.get("type") == template.kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == template.status else now
    new = {
        "type": template.kind,
        "status": template.status,
        "reason": template.reason,
        "message": template.message(**fields),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    rest = [c for c in previous if c.get("type") != template.kind]
    return sorted([*rest, new], key=lambda c: str(c["type"]))


def event_message(event: Event, **fields: object) -> tuple[str, str, str]:
    """(type, reason, message) of an Event, ready for the API."""
    template = event.value
    return template.status, template.reason, template.message(**fields)


def unusable_event(problem: Infeasible | str) -> tuple[str, str, str]:
    """The Warning Event for a plan that does not fit, or a spec the operator cannot use."""
    if isinstance(problem, Infeasible):
        return event_message(Event.INFEASIBLE, problem=problem.reason)
    return event_message(Event.INVALID_SPEC, problems=problem)


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
            previous, Condition.PLANNED_INFEASIBLE, now, generation, problem=result.reason
        )
        return set_condition(
            conds, Condition.READY_INFEASIBLE, now, generation, problem=result.reason
        )
    return set_condition(previous, Condition.PLANNED, now, generation, plan=plan_summary(result))


def unusable_conditions(
    previous: Conditions, result: Infeasible | str, now: str, generation: int
) -> Conditions:
    """Planned and Ready when nothing can run: the plan is infeasible, or (a string) the spec
    is one the operator cannot use, with the problems it names."""
    if isinstance(result, Infeasible):
        return planned_conditions(previous, result, now, generation)
    conds = set_condition(previous, Condition.PLANNED_INVALID, now, generation, problems=result)
    return set_condition(conds, Condition.READY_INVALID, now, generation, problems=result)


def workload_conditions(
    previous: Conditions, state: WorkloadState, now: str, generation: int
) -> Conditions:
    """Ready, Progressing and CapacityLimited from the Deployment and its pods."""
    if state.ready > 0:
        ready = Condition.READY
    elif state.replicas == 0 and state.exists:
        ready = Condition.READY_SCALED_TO_ZERO
    else:
        ready = Condition.READY_NONE
    counts = {"ready": state.ready, "replicas": state.replicas, "updated": state.updated}
    conds = set_condition(previous, ready, now, generation, **counts)
    rolling = (
        not state.generation_observed
        or state.updated < state.replicas
        or state.ready < state.replicas
        or state.current > state.replicas
    )
    progress = Condition.PROGRESSING if rolling else Condition.STABLE
    conds = set_condition(conds, progress, now, generation, **counts)
    if state.unschedulable:
        return set_condition(
            conds,
            Condition.UNSCHEDULABLE,
            now,
            generation,
            fit=state.replicas - state.unschedulable,
            replicas=state.replicas,
            pending=state.unschedulable,
            scheduler=state.unschedulable_message.rstrip("."),
        )
    return set_condition(conds, Condition.ALL_SCHEDULED, now, generation)


def plan_status(plan: Plan, concurrency_cap: int) -> dict[str, Any]:
    """status.plan."""
    return {
        "quantization": plan.quantization,
        "tensorParallel": plan.tensor_parallel,
        "gpusPerReplica": plan.gpus_per_replica,
        "nodesPerReplica": plan.nodes,
        "weightsGiB": plan.weights_gib,
        "kvCacheTokens": plan.kv_cache_tokens,
        "maxConcurrency": plan.max_concurrency,
        "concurrencyCap": concurrency_cap,
        "maxNumBatchedTokens": plan.max_num_batched_tokens,
        "maxNumBatchedTokensSource": plan.max_num_batched_tokens_source,
    }


def model_cache_conditions(
    previous: Conditions,
    phase: str,
    message: str,
    claim: str,
    key: str,
    limit: int,
    now: str,
    generation: int,
) -> Conditions:
    """ModelCached from the fill Job's state (model_cache.FillState)."""
    condition = {
        "Complete": Condition.MODEL_CACHED,
        "Failed": Condition.MODEL_FILL_FAILED,
    }.get(phase, Condition.MODEL_FILLING)
    return set_condition(
        previous, condition, now, generation, message=message, claim=claim, key=key, limit=limit
    )

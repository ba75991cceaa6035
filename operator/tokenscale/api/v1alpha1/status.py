"""The status tokenscale reports: conditions, plan, observed latency, decisions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tokenscale.api.v1alpha1.base import _Model

ConditionType = Literal[
    "Ready",
    "Progressing",
    "Planned",
    "CapacityLimited",
    "MetricsAvailable",
    "SLOMet",
    "SLOFeasible",
    "ScalingConflict",
    "ModelCached",
]


class Condition(_Model):
    """A standard Kubernetes condition."""

    type: ConditionType = Field(description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="Spec generation the condition was computed from."
    )


class PlanStatus(_Model):
    """The capacity plan in force."""

    quantization: str = Field(description="Quantization the plan uses.")
    tensor_parallel: int = Field(description="Tensor-parallel size.")
    gpus_per_replica: int = Field(description="GPUs each replica requests.")
    nodes_per_replica: int | None = Field(
        default=None,
        description="Nodes each replica spans: above 1, a LeaderWorkerSet group of that many "
        "pods of tensorParallel GPUs each, pipeline parallel across them.",
    )
    weights_gib: float = Field(alias="weightsGiB", description="Weight memory per replica in GiB.")
    kv_cache_tokens: int = Field(description="KV-cache capacity per replica in tokens.")
    max_concurrency: int = Field(description="Largest batch the KV cache supports.")
    concurrency_cap: int = Field(description="Concurrency cap per replica in force.")
    max_num_batched_tokens: int | None = Field(
        default=None,
        description="Per-step token budget the workers run with (vLLM --max-num-batched-tokens).",
    )
    max_num_batched_tokens_source: str | None = Field(
        default=None,
        description="Which rule chose maxNumBatchedTokens: spec (spec.engine.maxNumBatchedTokens), "
        "itlObjective (the largest prompt chunk whose step beside a full cap of decoding requests "
        "stays within the ITL objective; the Planned condition gives the figures), vllmDefault "
        "(a full default chunk already fits, or none does) or chunkedPrefillOff (maxModelLen).",
    )
    cold_start_seconds: float | None = Field(
        default=None,
        description="The cold start the autoscaler plans with: spec.scaling.coldStartSeconds, "
        "or, unset, the model cache's read plus warm-up (checkpoint / 1 GiB/s + 180 s), else "
        "120 s.",
    )


class ObservedStatus(_Model):
    """Latency and load as last read from Prometheus."""

    ttft_seconds: float | None = Field(
        default=None,
        description="Time to first token at spec.slo.percentile over the Prometheus window, "
        "gateway queue wait included (the TTFT-P95 column).",
    )
    itl_seconds: float | None = Field(default=None, description="ITL at the SLO percentile.")
    e2e_seconds: float | None = Field(
        default=None, alias="e2eSeconds", description="E2E at the SLO percentile."
    )
    arrival_rate: float | None = Field(default=None, description="Requests per second.")
    running: float | None = Field(default=None, description="Requests running, all replicas.")
    waiting: float | None = Field(default=None, description="Requests queued, all replicas.")
    kv_cache_usage: float | None = Field(default=None, description="Mean KV-cache use, 0-1.")
    sampled_at: str | None = Field(default=None, description="When the figures were read.")


class DecisionRecord(_Model):
    """One autoscaling decision."""

    time: str = Field(description="When it was made (RFC 3339).")
    replicas: int = Field(description="Replica count decided.")
    previous_replicas: int = Field(description="Replica count before.")
    concurrency_cap: int = Field(description="Per-replica concurrency cap decided.")
    applied: bool = Field(description="False in advisory mode or when nothing changed.")
    reason: str = Field(description="Why, in words.")


class InferenceServiceStatus(_Model):
    """Observed state of an InferenceService."""

    observed_generation: int | None = Field(
        default=None, description="Spec generation last reconciled."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")
    replicas: int | None = Field(default=None, description="Replicas that exist.")
    ready_replicas: int | None = Field(default=None, description="Replicas ready to serve.")
    desired_replicas: int | None = Field(default=None, description="Replicas tokenscale wants.")
    slo_met: Literal["True", "False", "NoMetrics", "NoTraffic"] | None = Field(
        default=None,
        description="The SLO-MET column: True or False as the SLOMet condition says, else why it "
        "cannot say: NoMetrics (Prometheus unavailable or no series; the MetricsAvailable "
        "condition says why) or NoTraffic (no request finished in the Prometheus window).",
    )
    plan: PlanStatus | None = Field(default=None, description="Capacity plan in force.")
    observed: ObservedStatus | None = Field(default=None, description="Last observed latency.")
    last_decisions: list[DecisionRecord] = Field(
        default_factory=list,
        max_length=10,
        description="The last ten decisions that changed the replica count or the concurrency "
        "cap, oldest first (a hold whose figures moved is not recorded).",
    )
    autoscaler: dict[str, Any] | None = Field(
        default=None,
        description="Autoscaler memory (recommendation window, learned capacity) so a restarted "
        "operator resumes without a jump.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    kopf: dict[str, Any] | None = Field(
        default=None,
        description="Operator bookkeeping (handler progress); kept in status so the spec and "
        "metadata stay exactly as the user applied them.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

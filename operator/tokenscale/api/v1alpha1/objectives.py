"""The objective and how replicas and batch sizes follow it: SLO, scaling, batch tuning."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from tokenscale.api.v1alpha1.base import Rule, _Model

ScalingMode = Literal["auto", "advisory", "off"]


class SloSpec(_Model):
    """The latency objective tokenscale holds at the lowest GPU cost."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.e2eSeconds) || !has(self.ttftSeconds) || self.e2eSeconds > self.ttftSeconds",
            "spec.slo.e2eSeconds must be greater than spec.slo.ttftSeconds",
        ),
    )

    ttft_seconds: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="Time to first token objective in seconds, at the given percentile.",
    )
    ttft_seconds_per_1k_prompt_tokens: float = Field(
        alias="ttftSecondsPer1kPromptTokens",
        default=0.0,
        ge=0,
        le=60,
        description=(
            "Length-aware TTFT objective: a request of P prompt tokens meets it within "
            "ttftSeconds + this x P / 1000 seconds (1 s + 0.1 s per 1000 tokens gives a "
            "12 000-token prompt 2.2 s). 0 (default): every prompt has ttftSeconds. The "
            "autoscaler compares the TTFT percentile with the objective of the prompt length "
            "at the same percentile (docs/autoscaling.md)."
        ),
    )
    itl_seconds: float = Field(
        default=0.05,
        gt=0,
        le=10,
        description=(
            "Inter-token latency objective in seconds, at the given percentile: each request's "
            "mean time per output token (vLLM's request_time_per_output_token_seconds)."
        ),
    )
    e2e_seconds: float | None = Field(
        alias="e2eSeconds",
        default=None,
        gt=0,
        le=3600,
        description="Optional end-to-end request latency objective.",
    )
    percentile: float = Field(
        default=95, ge=50, le=99.9, description="Percentile the objectives apply to."
    )


class BatchTuningSpec(_Model):
    """Live per-replica batch-size (concurrency cap) tuning."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.minConcurrency) || !has(self.maxConcurrency) || "
            "self.minConcurrency <= self.maxConcurrency",
            "spec.scaling.batch.minConcurrency must not exceed maxConcurrency",
        ),
    )

    enabled: bool = Field(
        default=True,
        description="Tune each replica's concurrency cap to hold the inter-token objective.",
    )
    min_concurrency: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Lowest concurrency cap per replica; the planner also requires KV-cache "
        "room for this many requests of engine.expectedSequenceTokens.",
    )
    max_concurrency: int = Field(
        default=256, ge=1, le=4096, description="Highest concurrency cap per replica."
    )


class ScalingSpec(_Model):
    """How the replica count follows load."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || "
            "self.minReplicas <= self.maxReplicas",
            "spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas",
        ),
    )

    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Most replicas.")
    mode: ScalingMode = Field(
        default="auto",
        description="auto acts on decisions; advisory computes and reports them (status, "
        "Events) without acting; off leaves replicas at minReplicas.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="Scale down only to the highest recommendation of this trailing window; "
        "a recommendation more than 20% above the present need counts only for "
        "coldStartSeconds (a passed burst is not paid for longer than a restart takes).",
    )
    max_scale_up_rate: float = Field(
        default=10.0,
        ge=1.0,
        le=1000,
        description="Replicas may grow at most by this factor per decision (at least +4).",
    )
    max_scale_down_rate: float = Field(
        default=2.0,
        ge=1.0,
        le=1000,
        description="Replicas may shrink at most by this factor per decision.",
    )
    cold_start_seconds: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Expected time from pod creation to serving; starting replicas count as "
        "coming capacity for this long. Unset: with spec.model.cache, the checkpoint read from "
        "the cache at 1 GiB/s plus 180 s of engine warm-up; otherwise 120 s. "
        "status.plan.coldStartSeconds is the value in use.",
    )
    batch: BatchTuningSpec = Field(
        default_factory=BatchTuningSpec, description="Per-replica batch-size tuning."
    )

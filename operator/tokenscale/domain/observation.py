"""The values `decide()` reads and returns: one service's metrics at one tick, the autoscaler's
remembered state (persisted in the InferenceService status as a plain dict) and the decision.

All times are seconds on one clock chosen by the caller (the operator passes wall-clock epoch
seconds, the benchmark virtual seconds); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenscale.api.v1alpha1 import SloSpec
from tokenscale.domain.burst_reserve import BurstMemory
from tokenscale.domain.ttft_objective import ttft_objective


@dataclass(frozen=True)
class Observation:
    """One service's metrics at one tick. Every figure may be None: missing, not yet scraped.

    Latencies are at the SLO percentile over the last window (Prometheus `histogram_quantile`
    over `rate(...[1m])`); rates and token means over the same window; gauges are sums over
    the service's replicas at `sampled_at`.
    """

    sampled_at: float | None = None
    ttft_s: float | None = None
    itl_s: float | None = None
    e2e_s: float | None = None
    arrival_rate: float | None = None  # requests per second reaching the gateways
    # The same over the last `recent_rate_window_s` (15 s): a step shows here a tick after it
    # began, where the window's rate takes most of the window to follow it (domain.scaling).
    arrival_rate_recent: float | None = None
    prompt_tokens: float | None = None  # mean prompt length of recent requests
    # The prompt length at the SLO percentile: a length-aware TTFT objective is read there.
    prompt_tokens_at_percentile: float | None = None
    # The window's share of prompts no replica prefills within the objective; `ttft_s` and
    # `prompt_tokens_at_percentile` are then over the other requests (domain.ttft_objective).
    out_of_reach_share: float = 0.0
    output_tokens: float | None = None  # mean generated tokens of recent requests
    running: float | None = None  # requests in the engines' batches
    waiting: float | None = None  # engine waiting queue + gateway queue
    # Requests running or waiting, averaged over the window (Little's L): the concurrency need
    # reads this, not the gauge of one instant, which at 3 req/s of 2.3 s requests (mean 6.9)
    # reads 10 or more about one tick in eight and would add a replica the rate does not need.
    in_flight_mean: float | None = None
    kv_cache_usage: float | None = None  # 0-1, mean over replicas
    ready_replicas: int | None = None
    # Creation time of each replica that exists but is not ready yet.
    starting_since: tuple[float, ...] = ()
    # Replicas the workload asks for now (the scale subresource's spec.replicas).
    current_replicas: int | None = None
    current_cap: int | None = None  # per-replica concurrency cap in force
    # The most replicas the cluster can schedule (free GPUs + ours); None = unknown/unlimited.
    schedulable_replicas: int | None = None
    # The shared model cache is still being filled: no replicas beyond the first (or beyond
    # those already serving an earlier copy) until it is complete.
    model_filling: bool = False

    def ttft_objective(self, slo: SloSpec) -> float:
        """The TTFT objective this window's percentile is held to (domain.ttft_objective)."""
        return ttft_objective(slo, self.prompt_tokens_at_percentile)

    def in_flight_now(self) -> float:
        """Requests running or waiting at the sampled instant (0 where a gauge is missing)."""
        return (self.running or 0.0) + (self.waiting or 0.0)

    def replicas_now(self) -> int:
        """Replicas the service has or has asked for: spec replicas, else ready + starting."""
        if self.current_replicas is not None:
            return self.current_replicas
        return (self.ready_replicas or 0) + len(self.starting_since)


@dataclass(frozen=True)
class ScalerState:
    """What the autoscaler remembers between ticks; `to_dict`/`from_dict` round-trip it."""

    # (time, replicas) recommendations of the scale-down stabilization window, oldest first.
    recommendations: tuple[tuple[float, int], ...] = ()
    # Learned ratio of observed to modeled per-request service time (1.0 = model is right).
    service_factor: float = 1.0
    # Learned ratio of observed ITL at the SLO percentile to the modeled mean ITL.
    itl_factor: float = 1.0
    # Per-replica concurrency cap last decided; None until the first decision seeds it.
    concurrency_cap: int | None = None
    last_scale_at: float | None = None
    # Burst (panic) mode holds until this time: scale up at once, never down.
    burst_until: float | None = None
    # Last time the cap moved, so it changes at most once per settle period.
    cap_changed_at: float | None = None
    # The arrival rate's rises within a cold start and its peak (domain.burst_reserve).
    burst: BurstMemory = field(default_factory=BurstMemory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [[t, r] for t, r in self.recommendations],
            "serviceFactor": self.service_factor,
            "itlFactor": self.itl_factor,
            "concurrencyCap": self.concurrency_cap,
            "lastScaleAt": self.last_scale_at,
            "burstUntil": self.burst_until,
            "capChangedAt": self.cap_changed_at,
            "burst": self.burst.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ScalerState:
        """Rebuild from `to_dict` output; unknown or malformed entries fall back to defaults, so
        a hand-edited or older status never stops the autoscaler."""
        if not data:
            return cls()
        recs: list[tuple[float, int]] = []
        for item in data.get("recommendations") or []:
            try:
                recs.append((float(item[0]), int(item[1])))
            except (TypeError, ValueError, IndexError):
                continue
        cap = _opt_float(data.get("concurrencyCap"))
        return cls(
            recommendations=tuple(recs),
            service_factor=_opt_float(data.get("serviceFactor")) or 1.0,
            itl_factor=_opt_float(data.get("itlFactor")) or 1.0,
            concurrency_cap=int(cap) if cap else None,
            last_scale_at=_opt_float(data.get("lastScaleAt")),
            burst_until=_opt_float(data.get("burstUntil")),
            cap_changed_at=_opt_float(data.get("capChangedAt")),
            burst=BurstMemory.from_dict(data.get("burst")),
        )


def _opt_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Decision:
    """What to do now, and why in words a person can check."""

    replicas: int
    concurrency_cap: int
    reason: str
    previous_replicas: int
    # False in advisory and off modes, and when nothing changes.
    applied: bool
    mode: str
    state: ScalerState = field(default_factory=ScalerState)
    # The cluster cannot schedule what the load needs; `capacity_message` says how short.
    capacity_limited: bool = False
    capacity_message: str = ""
    burst: bool = False
    # The recommendation before bounds, rate limits and capacity (for status and debugging).
    desired_unbounded: float = 0.0

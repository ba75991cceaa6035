"""The per-replica concurrency cap (the live batch size): the KV-cache room for the observed
token lengths, stepped down only while ITL is over the objective and TTFT has slack.

The replica count holds the ITL objective in steady state (the rate need sizes replicas for the
ITL-feasible throughput); a cap below the batch the load brings only turns ITL misses into TTFT
misses, since a request queued behind a full batch on its replica waits for a slot there. So
the cap starts at its ceiling and moves by observed ITL in small steps, at most once per settle
period so each step's effect reaches the 1-minute metrics window before the next:

    ITL 62 ms > 50 ms objective, cap 40 -> 40 x max(0.75, 0.95 x 50/62 = 0.77) = 30
    ITL 30 ms < 0.8 x 50 ms, cap 40 -> 40 x 1.1 = 44 (a cap that does not bind costs nothing,
    and a roomier one absorbs a burst in the batch instead of the queue)
    ITL 62 ms but TTFT 1.3 s > 1 s with 40 queued: hold 40. The replicas are short, not the
    batch too big; a smaller cap would only move the misses from ITL to TTFT.

It stays within scaling.batch.minConcurrency..maxConcurrency, the engine's max_num_seqs and the
KV-cache room: 246 574 cache tokens / (1155 + 211) tokens per request = 180 requests.

With batch.enabled false the cap is static: the plan's (the KV-cache room for
engine.expectedSequenceTokens, 246 574 / 2048 = 120), as the lifecycle handler renders it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.capacity import Plan
from tokenscale.domain.observation import Observation, ScalerState
from tokenscale.domain.scaling_constants import CONSTANTS, ScalingConstants


@dataclass(frozen=True)
class CapChoice:
    cap: int
    note: str
    changed: bool


def cap_bounds(spec: InferenceServiceSpec, plan: Plan, obs: Observation) -> tuple[int, int]:
    """(floor, ceiling) for the cap; the ceiling uses observed token lengths when known."""
    batch = spec.scaling.batch
    ceiling = min(batch.max_concurrency, plan.max_num_seqs)
    if obs.prompt_tokens and obs.output_tokens:
        per_request = obs.prompt_tokens + obs.output_tokens
        ceiling = min(ceiling, int(plan.kv_cache_tokens // max(1.0, per_request)))
    else:
        ceiling = min(ceiling, plan.max_concurrency)
    floor = min(batch.min_concurrency, batch.max_concurrency)
    return floor, max(floor, ceiling)


def static_cap(spec: InferenceServiceSpec, plan: Plan) -> int:
    """The cap without batch tuning: the plan's, within batch.maxConcurrency."""
    return max(1, min(plan.max_concurrency, spec.scaling.batch.max_concurrency))


def choose_cap(
    spec: InferenceServiceSpec,
    plan: Plan,
    obs: Observation,
    state: ScalerState,
    now: float,
    c: ScalingConstants = CONSTANTS,
) -> CapChoice:
    if not spec.scaling.batch.enabled:
        cap = static_cap(spec, plan)
        return CapChoice(cap, f"batch tuning off, cap {cap}", cap != obs.current_cap)
    floor, ceiling = cap_bounds(spec, plan, obs)
    prev = state.concurrency_cap
    if prev is None:
        return CapChoice(ceiling, f"cap {ceiling} seeded at the KV-cache room", True)
    settled = state.cap_changed_at is None or now - state.cap_changed_at >= c.cap_settle_s
    new = _feedback(spec, obs, prev, c) if settled else prev
    new = max(floor, min(ceiling, new))
    if new == prev:
        return CapChoice(prev, f"cap {prev}", False)
    itl = obs.itl_s or 0.0
    slo = spec.slo.itl_seconds
    note = f"ITL {itl * 1000:.0f} ms vs {slo * 1000:.0f} ms: cap {prev} → {new}"
    return CapChoice(new, note, True)


def _feedback(spec: InferenceServiceSpec, obs: Observation, prev: int, c: ScalingConstants) -> int:
    itl, slo = obs.itl_s, spec.slo.itl_seconds
    if itl is None:
        return prev
    if itl > slo:
        if _queue_over_ttft(spec, obs):
            return prev
        factor = max(c.cap_max_step_down, 0.95 * slo / itl)
        return min(prev - 1, math.floor(prev * factor))
    if itl < c.cap_raise_below * slo:
        return max(prev + 1, round(prev * c.cap_step_up))
    return prev


def _queue_over_ttft(spec: InferenceServiceSpec, obs: Observation) -> bool:
    ttft = obs.ttft_s
    return ttft is not None and ttft > obs.ttft_objective(spec.slo) and (obs.waiting or 0.0) >= 1.0

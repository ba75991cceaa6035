"""The share of a replica's time prefill may take before first tokens wait too often behind
another prompt's prefill.

A replica's prefill compute is one server: with chunked prefill, prompts share each step's
token budget, scheduled first come, first served, so a prompt arriving while another is being
prefilled waits for (or shares) its compute.
The rate need sizes a replica for a share of its ITL-feasible throughput, which says nothing of
that wait. Where answers are short and prompts long (code completion: 2 539-token prompts,
33-token answers) prefill takes 56% of a replica's time at that size, so more than half of the
arrivals find another prefill running, and a long prompt behind a long prompt misses its first
token with no queue in sight.

The wait behind the replica's prefills, in the M/M/1 approximation (prefill utilization rho,
mean prefill P): P(wait > t) = rho x exp(-(1 - rho) x t / P). Holding it under the objective's
tolerance (1% at p99) for the mean slack t (objective minus the mean prefill) bounds rho:
  slack 4.34 mean prefills (prefill-heavy: 1 s objective, 0.187 s prefill): rho <= 0.25
  slack 10.3 mean prefills (conversation: 0.089 s prefill): rho <= 0.60, above the 0.26-0.41
  the rate need already runs at, so conversation traffic pays nothing for it.
The approximation's exponential tail is the wait of many short prefills queued; where the slack
is only a few mean prefills (under `prefill_wait_min_slack`), what misses is the request's own
long prefill and the spread of the lengths, and the term would multiply the fleet for it (the
long-prompt mix: slack 2.4 prefills, rho <= 0.09, over four times its fleet; long context with
an allowance per 1k tokens: 1.4 prefills), so the term stays out there. It stays out too while
more prompts are out of any replica's reach than the percentile tolerates: the objective is
then read over the requests in reach, and the tail it would size for is not.
"""

from __future__ import annotations

import math

# Bisection rounds on rho in (0, 1): 2^-40, far below any share that changes a replica count.
_ROUNDS = 40


def prefill_share_within(slack_prefills: float, tolerance: float) -> float:
    """Largest prefill utilization rho with rho x exp(-(1 - rho) x slack_prefills) <=
    `tolerance`: 4.34 and 0.01 -> 0.254; 10.3 and 0.01 -> 0.602. rho x exp(...) rises with rho
    (its derivative is (1 + rho x slack) x exp(...) > 0), so bisection finds it."""
    if tolerance <= 0.0:
        return 0.0
    if tolerance >= 1.0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(_ROUNDS):
        mid = (low + high) / 2
        if mid * math.exp(-(1.0 - mid) * slack_prefills) > tolerance:
            high = mid
        else:
            low = mid
    return low


def prefill_wait_need(
    rate: float,
    prefill_s: float,
    ttft_objective_s: float,
    percentile: float,
    stages: int,
    min_slack_prefills: float,
) -> tuple[float, float] | None:
    """(replicas, rho) keeping the wait behind other prefills within the objective's tolerance
    at `rate` req/s; None where the slack is under `min_slack_prefills` mean prefills (the term
    stays out, see the module docstring). 29 req/s of 0.187 s prefills, 1 s objective at p99,
    one stage: slack 4.35 prefills, rho 0.255 -> 29 x 0.187 / 0.255 = 21.3 replicas. A replica
    of `stages` pipeline stages prefills `stages` prompts at once, one per stage."""
    if prefill_s <= 0.0 or rate <= 0.0:
        return None
    slack = (ttft_objective_s - prefill_s) / prefill_s
    if slack < min_slack_prefills:
        return None
    rho = prefill_share_within(slack, 1.0 - percentile / 100.0)
    if rho <= 0.0:
        return None
    return rate * prefill_s / rho / max(1, stages), rho

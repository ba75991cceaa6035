"""Latency histogram buckets fine around the objective, which the worker gives vLLM with
`--custom-histogram-buckets` (vLLM 0.32, `ObservabilityConfig.custom_histogram_buckets`).

The autoscaler reads percentiles as `histogram_quantile` interpolates them, linearly inside a
bucket. vLLM's default ITL buckets jump from 25 to 50 to 75 ms, so with a 50 ms objective a p99
of 35 ms can read as 48 ms whenever most requests sit in (25, 50]: the benchmark's drawn world
measured the default buckets costing half as many GPU-hours again (docs/benchmarks.md). With
bounds every 5-10% of the objective between half and twice it, the interpolation error near the
objective is at most a few percent, and the share of requests within the objective is read
exactly (the objective is a bound).

Worked example, ITL objective 50 ms: vLLM's 19 defaults plus 25, 30, 35, 37.5, 40, 42.5, 45,
47.5, 50, 52.5, 55, 60, 65, 75, 87.5 and 100 ms: 31 bounds (a few more series per pod; vLLM's
own help warns that every bucket is one more series).
"""

from __future__ import annotations

import itertools
import math

# vLLM 0.32's defaults (vllm/v1/metrics/buckets.py), which the simulator exports too.
TIME_TO_FIRST_TOKEN_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
INTER_TOKEN_LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip

# Multiples of the objective added to the defaults: dense just around it, where the autoscaler
# decides, sparse towards half and twice it.
OBJECTIVE_MULTIPLES = (
    0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0,
)  # fmt: skip

# vLLM's bucket families for the histograms the autoscaler reads: TTFT, and ITL (the per-token
# and the per-request time-per-output-token histograms share the family).
TTFT_FAMILY = "time_to_first_token"
ITL_FAMILY = "inter_token_latency"


def around(defaults: tuple[float, ...], objective_s: float) -> list[float]:
    """`defaults` plus the multiples of `objective_s`, ascending, without near-duplicates
    (bounds within 0.1% of one another are one bound)."""
    merged = sorted({*defaults, *(round(objective_s * m, 9) for m in OBJECTIVE_MULTIPLES)})
    out: list[float] = []
    for bound in merged:
        if out and bound <= out[-1] * 1.001:
            continue
        out.append(bound)
    return out


def slo_buckets(ttft_s: float, itl_s: float) -> dict[str, list[float]]:
    """The `--custom-histogram-buckets` value for these objectives."""
    return {
        TTFT_FAMILY: around(TIME_TO_FIRST_TOKEN_BUCKETS, ttft_s),
        ITL_FAMILY: around(INTER_TOKEN_LATENCY_BUCKETS, itl_s),
    }


# vLLM 0.32's bucket families (vllm/v1/metrics/buckets.py, BucketFamilyKey).
VLLM_FAMILIES = (
    "request_latency",
    "time_to_first_token",
    "inter_token_latency",
    "iteration_tokens",
    "request_params_n",
    "request_num_preemptions",
    "request_tokens",
    "kv_cache_residency",
)


def check_buckets(value: dict[str, list[float]]) -> dict[str, list[float]]:
    """vLLM's own rules for `--custom-histogram-buckets` (config/observability.py), so that a
    bad value is refused with the family named before vLLM starts."""
    for family, bounds in value.items():
        if family not in VLLM_FAMILIES:
            raise ValueError(
                f"histogram buckets: unknown family {family!r}; known: {', '.join(VLLM_FAMILIES)}"
            )
        if not bounds:
            raise ValueError(f"histogram buckets[{family!r}]: the list must not be empty")
        for bound in bounds:
            if isinstance(bound, bool) or not math.isfinite(bound) or bound <= 0:
                raise ValueError(
                    f"histogram buckets[{family!r}]: bound {bound!r} must be a finite number > 0"
                )
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(
                f"histogram buckets[{family!r}]: bounds must be strictly increasing: {bounds}"
            )
    return value

"""The embedded default workload: a day of conversation traffic compressed into one hour,
generated from a seed (no data file needed).

Fitted to published statistics:
- token lengths: the Azure LLM inference conversation trace (Patel et al., "Splitwise", ISCA
  2024): prompt median 1020 tokens (mean 1155, p99 4142), output median 129 (mean 211, at most
  1000). Lognormal with those medians; sigma 0.6 for prompts (mean 1221, p99 4100) and 0.99 for
  outputs (mean 211).
- arrivals: BurstGPT (Wang et al., 2024) finds ChatGPT conversation traffic follows a daily curve
  with bursts, and Gamma-distributed inter-arrival times with CV > 1; we use a Gamma renewal
  process of shape 0.7 (CV 1.2) in operational time, so the rate follows the curve.
- daily curve: trough at 35% of peak (night), a morning ramp and an afternoon peak, as in the
  diurnal load of Azure's production LLM traces (Stojkovic et al., DynamoLLM, HPCA 2025), plus
  six seeded bursts of 1.3-1.7x lasting 1-2.5 minutes.

`long_output_workload` keeps the day and the bursts (peak 40 req/s) with long answers to short
prompts, the mix where the live batch cap matters (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenscale.bench.traces import Trace

DURATION_S = 3600.0
PEAK_RATE = 28.0  # req/s at the top of the daily curve, before bursts
TROUGH_SHARE = 0.35
GAMMA_SHAPE = 0.7
BURSTS = 6


@dataclass(frozen=True)
class TokenMix:
    """Lognormal prompt and output lengths: medians, sigmas and clips."""

    prompt_median: float = 1020.0
    prompt_sigma: float = 0.6
    output_median: float = 129.0
    output_sigma: float = 0.99
    prompt_max: int = 14000
    output_max: int = 1000


CONVERSATION = TokenMix()
# Long answers to short questions (explanations, code, drafts): prompts median 250 tokens (mean
# 344), outputs median 400 (mean 510, p99 2000), about 850 tokens a request against the 2048 the
# planner assumes by default, so the batch the ITL objective allows (256, vLLM's max_num_seqs)
# is twice the static KV-room cap (246 574 / 2048 = 120).
LONG_OUTPUT = TokenMix(250.0, 0.8, 400.0, 0.7, 14000, 4000)
LONG_OUTPUT_PEAK = 40.0


def rate_curve(t: np.ndarray, rng: np.random.Generator, peak: float = PEAK_RATE) -> np.ndarray:
    """Requests/s at each second: two-harmonic day plus bursts."""
    x = t / DURATION_S  # fraction of the day, 0 = midnight
    day = 0.5 - 0.5 * np.cos(2 * np.pi * (x - 0.08))  # peaks mid-afternoon
    day = day + 0.18 * np.sin(4 * np.pi * (x - 0.2)) * day  # morning shoulder
    day = np.clip(day / day.max(), 0.0, 1.0)
    rate = peak * (TROUGH_SHARE + (1 - TROUGH_SHARE) * day)
    for _ in range(BURSTS):
        start = rng.uniform(0.1, 0.9) * DURATION_S
        length = rng.uniform(60, 150)
        height = rng.uniform(1.3, 1.7)
        rate = np.where((t >= start) & (t < start + length), rate * height, rate)
    return np.asarray(rate, dtype=np.float64)


def default_workload(
    seed: int = 1,
    duration: float = DURATION_S,
    mix: TokenMix = CONVERSATION,
    peak: float = PEAK_RATE,
    name: str = "embedded-day",
) -> Trace:
    rng = np.random.default_rng(seed)
    grid = np.arange(0.0, DURATION_S + 1.0)
    cumulative = np.concatenate([[0.0], np.cumsum(rate_curve(grid, rng, peak)[:-1])])
    total = cumulative[-1]
    # Unit-rate Gamma renewal process in operational time, mapped back through the curve.
    n = int(total * 1.2) + 100
    gaps = rng.gamma(GAMMA_SHAPE, 1.0 / GAMMA_SHAPE, size=n)
    op = np.cumsum(gaps)
    op = op[op < total]
    arrival = np.interp(op, cumulative, grid)
    arrival = arrival[arrival <= duration]
    k = len(arrival)
    prompt = rng.lognormal(np.log(mix.prompt_median), mix.prompt_sigma, k)
    output = rng.lognormal(np.log(mix.output_median), mix.output_sigma, k)
    return Trace(
        name,
        arrival,
        np.clip(np.round(prompt), 16, mix.prompt_max).astype(np.int64),
        np.clip(np.round(output), 1, mix.output_max).astype(np.int64),
    )


def long_output_workload(seed: int = 1, duration: float = DURATION_S) -> Trace:
    """The same day and bursts (peak 40 req/s) with long answers to short prompts."""
    return default_workload(seed, duration, LONG_OUTPUT, LONG_OUTPUT_PEAK, "long-output-day")


WORKLOADS = {"day": default_workload, "long-output": long_output_workload}

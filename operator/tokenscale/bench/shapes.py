"""Synthetic traffic shapes for the validation set (never used to choose a constant): each an
hour of arrivals from a seed, Gamma inter-arrivals (CV 1.2, as the embedded day) along a rate
curve, with its own token mix.

flash-crowd    12 req/s, then 5x for 3 minutes from minute 30 (a 20 s rise): a news spike.
on-off         5 minutes at 24 req/s, 5 minutes at 3 req/s, alternating (batch jobs).
steep-ramp     4 req/s for 10 minutes, to 30 req/s within 10 minutes, then held (a morning).
long-prompt    conversation rates (the embedded day's curve, peak 14 req/s) with prompts of
               median 3000 tokens (sigma 0.8) and conversation-length answers.
prefill-heavy  code completion / RAG: prompts median 2000 (sigma 0.7), answers median 24, at the
               day's curve with a 30 req/s peak.
long-context   conversations carrying 10k+ tokens of history: prompts median 11 000 (sigma 0.12,
               clipped 10 000-14 000), answers median 200, peak 3 req/s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tokenscale.bench.traces import Trace
from tokenscale.bench.workload import (
    CONVERSATION,
    DURATION_S,
    GAMMA_SHAPE,
    TokenMix,
    rate_curve,
)

GRID = np.arange(0.0, DURATION_S + 1.0)


def _trace(name: str, rate: np.ndarray, mix: TokenMix, rng: np.random.Generator, lo: int) -> Trace:
    cumulative = np.concatenate([[0.0], np.cumsum(rate[:-1])])
    total = cumulative[-1]
    op = np.cumsum(rng.gamma(GAMMA_SHAPE, 1.0 / GAMMA_SHAPE, size=int(total * 1.2) + 100))
    arrival = np.interp(op[op < total], cumulative, GRID)
    k = len(arrival)
    prompt = rng.lognormal(np.log(mix.prompt_median), mix.prompt_sigma, k)
    output = rng.lognormal(np.log(mix.output_median), mix.output_sigma, k)
    return Trace(
        name,
        arrival,
        np.clip(np.round(prompt), lo, mix.prompt_max).astype(np.int64),
        np.clip(np.round(output), 1, mix.output_max).astype(np.int64),
    )


def flash_crowd(seed: int) -> Trace:
    rise = np.clip((GRID - 1800.0) / 20.0, 0.0, 1.0) * (GRID < 1980.0)
    return _trace(
        "flash-crowd", 12.0 * (1 + 4 * rise), CONVERSATION, np.random.default_rng(seed), 16
    )


def on_off(seed: int) -> Trace:
    on = (GRID // 300) % 2 == 0
    return _trace("on-off", np.where(on, 24.0, 3.0), CONVERSATION, np.random.default_rng(seed), 16)


def steep_ramp(seed: int) -> Trace:
    rate = 4.0 + 26.0 * np.clip((GRID - 600.0) / 600.0, 0.0, 1.0)
    return _trace("steep-ramp", rate, CONVERSATION, np.random.default_rng(seed), 16)


def _day(seed: int, peak: float, mix: TokenMix, name: str, lo: int = 16) -> Trace:
    rng = np.random.default_rng(seed)
    return _trace(name, rate_curve(GRID, rng, peak), mix, rng, lo)


def long_prompt(seed: int) -> Trace:
    return _day(seed, 14.0, TokenMix(3000.0, 0.8, 129.0, 0.99, 14000, 1000), "long-prompt")


def prefill_heavy(seed: int) -> Trace:
    return _day(seed, 30.0, TokenMix(2000.0, 0.7, 24.0, 0.8, 14000, 256), "prefill-heavy")


def long_context(seed: int) -> Trace:
    mix = TokenMix(11000.0, 0.12, 200.0, 0.8, 14000, 1000)
    return _day(seed, 3.0, mix, "long-context", lo=10000)


SHAPES: dict[str, Callable[[int], Trace]] = {
    "flash-crowd": flash_crowd,
    "on-off": on_off,
    "steep-ramp": steep_ramp,
    "long-prompt": long_prompt,
    "prefill-heavy": prefill_heavy,
    "long-context": long_context,
}

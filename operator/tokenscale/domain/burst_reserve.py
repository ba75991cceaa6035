"""The burst reserve: hard throughput kept for the rise the service's own arrival rate has shown
within one cold start.

A burst shorter than a cold start is over before a replica asked for at its start can serve, so
only capacity already running meets it. How much to keep is a property of the traffic, not a
constant: a service whose rate never rose more than 10% within two minutes should pay for no
reserve, and one that jumps from 3 to 24 req/s at the top of every batch job (the on-off shape)
needs the hard throughput for 24 req/s while it sees 3.

The memory is two decaying high-water marks, updated each tick from the arrival rate:
  rise  the largest swing within the last cold start: the ratio of the rate to the lowest
        rate, or of the highest rate to the rate (26 -> 39 req/s within 120 s: 1.5; a batch
        job ending, 24 -> 3 req/s: 8)
  peak  the highest rate seen
and the rate reserved for is the present rate times the rise, no farther than the peak seen:
  3 req/s after an on phase at 24 (rise 8, peak 24) -> min(3 x 8, 24) = 24 req/s
  26 req/s at the day's top after 1.5x bursts (peak 39) -> min(39, 39) = 39 req/s
A service that rises to a new peak is covered from then on; its first burst from a steady rate
is not (nothing in its history said it would come). A fall counts as a swing because traffic
that falls fast comes back fast: without it, the on-off shape's first lull shrank the fleet to
one replica and the first rise back missed 3 660 of its ~48 000 requests (seed 1: 91.87%;
with it 99.08%). The half-life (30 minutes), the largest swing remembered (10x) and the rate
floor of a swing's denominator are in `scaling_constants.py`.

The swing multiplies the rate as the window counted it, noise and all, so `decide()` passes
the highest rate the count does not rule out (`rate_within_noise`): in the on-off shape's lulls
a minute reading 2.7 or 3.3 req/s put the reserve on either side of a whole replica.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tokenscale.domain.scaling_constants import CONSTANTS, ScalingConstants


@dataclass(frozen=True)
class BurstMemory:
    """What the reserve remembers between ticks (part of `ScalerState`)."""

    # (time, arrival rate) of the ticks within the last cold start, oldest first.
    samples: tuple[tuple[float, float], ...] = ()
    rise: float = 1.0
    peak: float = 0.0
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": [[t, r] for t, r in self.samples],
            "rise": self.rise,
            "peak": self.peak,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BurstMemory:
        """Malformed entries fall back to an empty memory (a hand-edited status)."""
        if not isinstance(data, Mapping):
            return cls()
        samples: list[tuple[float, float]] = []
        for item in data.get("samples") or []:
            try:
                samples.append((float(item[0]), float(item[1])))
            except (TypeError, ValueError, IndexError):
                continue
        try:
            rise = max(1.0, float(data.get("rise", 1.0)))
            peak = max(0.0, float(data.get("peak", 0.0)))
            at = data.get("updatedAt")
            updated_at = None if at is None else float(at)
        except (TypeError, ValueError):
            return cls(samples=tuple(samples))
        if not (math.isfinite(rise) and math.isfinite(peak)):
            return cls(samples=tuple(samples))
        return cls(tuple(samples), rise, peak, updated_at)


def remember(
    memory: BurstMemory,
    now: float,
    rate: float,
    horizon_s: float,
    c: ScalingConstants = CONSTANTS,
) -> BurstMemory:
    """The memory after a tick that read `rate` req/s at `now`; `horizon_s` is the service's
    cold start. 10 req/s two minutes ago, 15 now: rise at least 1.5, peak at least 15."""
    rate = max(0.0, rate)
    decay = 1.0
    if memory.updated_at is not None and now > memory.updated_at:
        decay = 0.5 ** ((now - memory.updated_at) / c.burst_half_life_s)
    samples = tuple((t, r) for t, r in memory.samples if now - t <= horizon_s and t < now)
    samples = (*samples, (now, rate))
    floor = c.burst_floor_rate
    lowest = max(floor, min(r for _, r in samples))
    highest = max(r for _, r in samples)
    # A fall is a swing too: a service that dropped 24 -> 3 req/s within a cold start has shown
    # it moves 8x within one, and its next rise back (the next batch job) is as fast.
    rise_now = max(1.0, rate / lowest, highest / max(floor, rate))
    rise = min(c.burst_max_rise, max(rise_now, 1.0 + (memory.rise - 1.0) * decay))
    peak = max(rate, memory.peak * decay)
    return replace(memory, samples=samples, rise=rise, peak=peak, updated_at=now)


def reserved_rate(memory: BurstMemory, rate: float, rate_high: float | None = None) -> float:
    """The arrival rate the fleet's hard throughput should cover now: the rate times the rise
    seen within a cold start, no farther than the peak seen (and never below the rate).
    `rate_high`, when given, is the highest rate the window's count does not rule out
    (`rate_within_noise`); the rise multiplies it instead of the rate read."""
    start = max(rate, rate_high or 0.0)
    return max(rate, min(start * memory.rise, memory.peak))


def rate_within_noise(rate: float, window_s: float, sigmas: float) -> float:
    """The highest arrival rate a window of `window_s` seconds that counted `rate` req/s does
    not rule out at `sigmas` Poisson deviations of its count: 3 req/s over 60 s (180 arrivals,
    sqrt 13.4) at 4 deviations -> 3.89 req/s.

    Why the reserve starts there: the rise multiplies the rate, so the window's noise is
    multiplied too. In a lull at 3 req/s after 24 req/s phases (rise 8), a window that counted
    2.7 req/s reserves 21.6 req/s where the next phase brings 24: 2.9 replicas where 3.2 hold it,
    a replica short whichever way the lull's last minute happened to fall."""
    if rate <= 0.0 or window_s <= 0.0:
        return max(0.0, rate)
    return rate + sigmas * math.sqrt(rate / window_s)

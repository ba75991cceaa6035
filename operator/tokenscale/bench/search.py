"""Hindsight tuning: each baseline's threshold searched, per workload, for its cheapest
configuration at >= 99% SLO attainment (the strongest that baseline can be on that workload),
and the global setting: the cheapest reaching 99% on every training workload.

A larger threshold means fewer replicas, so the search bisects the threshold in log space for the
largest one that still reaches the objective; runs that already missed too many requests stop
early. The search runs at vLLM's own cap: the baselines' per-replica concurrency at any
threshold that reaches 99% stays far under the rendered cap (120 on the standard scenario), so
that cap never binds and gives the same runs (`search(..., caps=CAP_OPTIONS)` checks it).
Every run is kept, and the failing run nearest above the cheapest passing threshold is run to
the end: the sweep gives the GPU-hours at exactly 99.0% by linear interpolation between the two
runs that bracket it (`at_attainment`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tokenscale.bench.baselines import Family
from tokenscale.bench.policies import CAP_OPTIONS, Tokenscale
from tokenscale.bench.runner import RunResult, simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace
from tokenscale.domain.scaling_constants import CONSTANTS

OBJECTIVE = 0.99
STEPS = 3  # bisections after the two ends: a 4x range ends within a factor of 1.19


@dataclass(frozen=True)
class Point:
    threshold: float
    cap_option: str
    result: RunResult

    @property
    def attainment(self) -> float:
        return self.result.slo_attainment


@dataclass(frozen=True)
class Searched:
    family: str
    points: tuple[Point, ...]

    @property
    def best(self) -> Point | None:
        """The cheapest run at >= 99% (None: no threshold reached it)."""
        good = [p for p in self.points if p.attainment >= OBJECTIVE and not p.result.gave_up]
        return min(good, key=lambda p: p.result.gpu_hours) if good else None


def _bisect(run: Callable[[float], Point], lo: float, hi: float, steps: int) -> list[Point]:
    points = [run(lo)]
    if points[0].attainment < OBJECTIVE:
        return points  # even the most generous threshold misses
    points.append(run(hi))
    if points[-1].attainment >= OBJECTIVE:
        return points
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        p = run(mid)
        points.append(p)
        lo, hi = (mid, hi) if p.attainment >= OBJECTIVE else (lo, mid)
    return points


def search(
    scenario: Scenario,
    trace: Trace,
    family: Family,
    initial: int,
    caps: Sequence[str] = ("vllm",),
    steps: int = STEPS,
) -> Searched:
    points: list[Point] = []
    for cap in caps:

        def run(threshold: float, cap: str = cap) -> Point:
            policy = family.make(threshold, cap, scenario.min_replicas, scenario.max_replicas)
            res = simulate(trace, scenario, policy, initial, give_up_below=OBJECTIVE)
            return Point(round(threshold, 2), cap, res)

        found = _bisect(run, *family.search, steps)
        points += _complete_bracket(found, family, scenario, trace, initial, cap)
    return Searched(family.name, tuple(points))


def _complete_bracket(
    points: list[Point],
    family: Family,
    scenario: Scenario,
    trace: Trace,
    initial: int,
    cap: str,
) -> list[Point]:
    """Run to the end the failing run just above the cheapest passing threshold, which stopped
    early: with its true attainment and GPU-hours, `at_attainment` interpolates to exactly 99.0%
    instead of reporting the cheapest passing run."""
    passing = [p for p in points if p.attainment >= OBJECTIVE and not p.result.gave_up]
    if not passing:
        return points
    best = max(passing, key=lambda p: p.threshold)
    above = [p for p in points if p.threshold > best.threshold]
    if not above:
        return points
    nearest = min(above, key=lambda p: p.threshold)
    if not nearest.result.gave_up:
        return points
    policy = family.make(nearest.threshold, cap, scenario.min_replicas, scenario.max_replicas)
    whole = Point(nearest.threshold, cap, simulate(trace, scenario, policy, initial))
    return [whole if p is nearest else p for p in points]


def at_attainment(points: Sequence[tuple[float, float]], target: float = OBJECTIVE) -> float:
    """GPU-hours at exactly `target` attainment, linear between the cheapest run at or above it
    and the most attaining run below it that is cheaper; inf if no run reaches it.
    points: (attainment, GPU-hours)."""
    above = [p for p in points if p[0] >= target]
    if not above:
        return math.inf
    a_hi, g_hi = min(above, key=lambda p: p[1])
    below = [p for p in points if p[0] < target and p[1] < g_hi]
    if not below:
        return g_hi
    a_lo, g_lo = max(below, key=lambda p: p[0])
    return g_lo + (g_hi - g_lo) * (target - a_lo) / (a_hi - a_lo)


def global_setting(per_workload: Sequence[Searched]) -> tuple[float, str] | None:
    """The largest threshold (per cap option, the cheaper kind) that reached 99% on every
    training workload: the largest passing threshold is the cheapest, and the smallest of those
    over the workloads passes on all of them (a larger threshold never asks for more replicas)."""
    options: list[tuple[float, str]] = []
    for cap in CAP_OPTIONS:
        per: list[float] = []
        for s in per_workload:
            good = [
                p.threshold for p in s.points if p.cap_option == cap and p.attainment >= OBJECTIVE
            ]
            if not good:
                break
            per.append(max(good))
        else:
            options.append((min(per), cap))
    return max(options, default=None)


UTILIZATION_SWEEP = (0.7, 0.8, 0.9, 1.0)


def sweep_tokenscale(
    scenario: Scenario, trace: Trace, initial: int, targets: Sequence[float] = UTILIZATION_SWEEP
) -> list[tuple[float, RunResult]]:
    """tokenscale at several utilization targets (its own threshold), for its GPU-hours at
    exactly 99.0% by `at_attainment`, as the baselines get theirs."""
    out = []
    for u in targets:
        policy = Tokenscale(scenario, replace(CONSTANTS, target_utilization=u))
        out.append((u, simulate(trace, scenario, policy, initial)))
    return out

"""The baselines' arithmetic at their released defaults, moved forward numerically."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tokenscale.bench.baselines import FAMILIES, Apa, Hpa, Kpa
from tokenscale.bench.metrics import Recorder
from tokenscale.bench.runner import RunResult, simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.search import Point, Searched, _bisect, at_attainment, global_setting
from tokenscale.bench.workload import default_workload
from tokenscale.domain.observation import Observation

SC = Scenario()
TRACE = default_workload(7).scaled(1.0, duration=240, max_tokens=SC.max_model_len)


def obs(current: int, ready: int, running: float = 0.0, waiting: float = 0.0) -> Observation:
    return Observation(
        running=running, waiting=waiting, ready_replicas=ready, current_replicas=current
    )


def rec_with(level: float, until: float) -> Recorder:
    rec = Recorder(TRACE, SC.tick_s)
    t = 0.0
    while t <= until:
        rec.concurrency.append((t, level))
        t += SC.sample_s
    return rec


def test_hpa_divides_by_status_replicas_not_ready_pods() -> None:
    # 4 pods (2 still starting), 30 waiting at target 5: usage ratio 30 / (5 x 4) = 1.5, outside
    # the 10% tolerance -> ceil(30 / 5) = 6. Dividing by the 2 ready pods would read 3.0.
    hpa = Hpa(5.0, waiting_only=True)
    assert hpa.decide(60.0, obs(4, 2, waiting=30.0), rec_with(0, 0))[0] == 6
    # 21 waiting: ratio 1.05, inside the tolerance: keep 4
    assert Hpa(5.0, waiting_only=True).decide(60.0, obs(4, 2, waiting=21.0), rec_with(0, 0))[0] == 4


def test_hpa_on_running_plus_waiting_and_its_300_s_stabilization() -> None:
    hpa = Hpa(40.0)
    assert hpa.decide(60.0, obs(4, 4, running=300.0, waiting=20.0), rec_with(0, 0))[0] == 8
    # load halves: the recommendation of 4 waits out the 300 s window behind the 8
    assert hpa.decide(75.0, obs(8, 8, running=160.0), rec_with(0, 0))[0] == 8
    assert hpa.decide(345.0, obs(8, 8, running=160.0), rec_with(0, 0))[0] == 8
    assert hpa.decide(375.0, obs(8, 8, running=160.0), rec_with(0, 0))[0] == 4


def test_kpa_release_defaults_and_panic() -> None:
    kpa = Kpa()
    assert (kpa.target, kpa.utilization, kpa.stable_s, kpa.panic_s) == (100.0, 0.7, 60.0, 6.0)
    # 420 in flight at 70 per pod: 6 pods
    assert kpa.decide(120.0, obs(2, 6), rec_with(420.0, 120.0))[0] == 6
    # 2 ready pods and 6 needed: 3x, past the 200% panic threshold; panic holds the peak
    panic = Kpa()
    assert panic.decide(120.0, obs(2, 2), rec_with(420.0, 120.0))[0] == 6
    assert panic.decide(122.0, obs(6, 6), rec_with(70.0, 122.0))[0] == 6
    assert panic.panic_since == 120.0


def test_kpa_2s_variant_decides_every_2_s() -> None:
    fast = simulate(TRACE, SC, Kpa(24.0, tick=2.0), 2)
    slow = simulate(TRACE, SC, Kpa(24.0), 2)

    def mean_gap(times: list[float]) -> float:
        return (times[-1] - times[0]) / (len(times) - 1)

    # ticks fall on the 2 s sample grid: 15 s apart on average (16, 14, 16, ...)
    assert mean_gap(fast.times) == pytest.approx(2.0)
    assert mean_gap(slow.times) == pytest.approx(15.0, abs=0.5)
    assert (fast.policy, slow.policy) == ("kpa-2s", "kpa")


def test_apa_current_release_cools_down_and_2024_does_not() -> None:
    low = rec_with(20.0, 400.0)  # 20 in flight over 8 pods: 2.5 per pod at target 10
    current = Apa(10.0, "current", last_change=200.0)
    assert current.decide(400.0, obs(8, 8), low)[0] == 8  # within 300 s of the last change
    assert current.decide(501.0, obs(8, 8), low)[0] == 4  # at most /2 per decision
    old = Apa(10.0, "2024", last_change=200.0)
    assert old.decide(400.0, obs(8, 8), low)[0] == 4
    # 2024's down tolerance is 0.2: 8.5 per pod at target 10 (ratio 0.85) holds there, not now
    mid = rec_with(68.0, 400.0)
    assert Apa(10.0, "2024").decide(400.0, obs(8, 8), mid)[0] == 8
    assert Apa(10.0, "current").decide(400.0, obs(8, 8), mid)[0] == 7


def test_history_covers_the_longest_window() -> None:
    rec = Recorder(TRACE, SC.tick_s)
    longest = max(Apa(10.0).window_s, Kpa().stable_s)
    assert rec.concurrency.maxlen is not None
    assert rec.concurrency.maxlen * SC.sample_s > longest


def test_every_family_offers_both_cap_options() -> None:
    for fam in FAMILIES.values():
        for cap in ("rendered", "vllm"):
            p = fam.make(fam.search[0], cap, 1, 40)
            assert p.initial_cap(SC) == (
                SC.plan.max_concurrency if cap == "rendered" else SC.plan.max_num_seqs
            )


def test_gpu_hours_at_99_interpolate_between_the_bracketing_runs() -> None:
    # 99.4% at 12 GPU-h and 98.4% at 10: 99.0% lies 60% of the way -> 11.2
    points = [(0.999, 15.0), (0.994, 12.0), (0.984, 10.0), (0.90, 8.0)]
    assert at_attainment(points) == pytest.approx(11.2)
    assert math.isinf(at_attainment([(0.98, 10.0)]))


def fake_run(att: float, gpu: float) -> RunResult:
    return RunResult("kpa", "x", att, gpu, 0.1, 0.2, 0.3, 0.03, 1, 0)


def test_bisection_finds_the_largest_threshold_at_99() -> None:
    # attainment falls with the threshold and crosses 99% at 20: the search ends within a
    # factor 4 ** (1 / 8) = 1.19 below it and keeps every run it made
    def run(t: float) -> Point:
        return Point(t, "vllm", fake_run(0.995 if t <= 20 else 0.98, 100 / t))

    points = _bisect(run, 10.0, 40.0, 3)
    best = Searched("kpa", tuple(points)).best
    assert best is not None and 20 / 1.19 <= best.threshold <= 20
    assert len(points) == 5


def test_global_setting_is_the_smallest_of_the_largest_passing_thresholds() -> None:
    def searched(passing: list[float], failing: list[float]) -> Searched:
        pts = [Point(t, "vllm", fake_run(0.995, 1.0)) for t in passing]
        pts += [Point(t, "vllm", fake_run(0.98, 1.0)) for t in failing]
        return Searched("kpa", tuple(pts))

    # 28 passes on the first workload, only 20 on the second: 20 passes on both
    assert global_setting([searched([10, 28], [40]), searched([10, 20], [28])]) == (20, "vllm")
    assert global_setting([searched([10], []), searched([], [10])]) is None


def test_the_search_runs_the_failing_bracket_to_the_end_for_the_interpolation() -> None:
    # A short replay: the bisection's runs under 99% stop early, but the nearest one above the
    # cheapest passing threshold is rerun whole, so 99.0% is interpolated, not rounded up.
    from tokenscale.bench.search import search

    # At vLLM's 8192-token budget the short trace fails KPA's larger thresholds; at the plan's
    # ITL budget every threshold searched passes and there is no failing bracket to run.
    found = search(replace(SC, max_num_batched_tokens=8192), TRACE, FAMILIES["kpa"], 3, steps=2)
    best = found.best
    assert best is not None
    above = [p for p in found.points if p.threshold > best.threshold]
    assert above, "the bisection made no failing run above the best"
    nearest = min(above, key=lambda p: p.threshold)
    assert not nearest.result.gave_up and nearest.attainment < 0.99
    pts = [(p.attainment, p.result.gpu_hours) for p in found.points if not p.result.gave_up]
    at99 = at_attainment(pts)
    if nearest.result.gpu_hours < best.result.gpu_hours:
        assert nearest.result.gpu_hours < at99 < best.result.gpu_hours
    else:  # a short replay can cost more at the larger threshold: nothing to interpolate
        assert at99 == best.result.gpu_hours

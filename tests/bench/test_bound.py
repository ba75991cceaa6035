"""The lower bound: its linear-programming relaxation worked by hand, and no policy under it."""

from __future__ import annotations

import math

import pytest

from tokenscale.bench.baselines import Apa, Hpa, Kpa
from tokenscale.bench.bound import (
    LowerBound,
    MinuteCurve,
    filled_curve,
    lower_bound,
    search_counts,
    warm_lead,
)
from tokenscale.bench.policies import Policy, Static, Tokenscale
from tokenscale.bench.runner import simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.workload import default_workload

SC = Scenario()
GPUS = SC.plan.gpus_per_replica


def two_minutes() -> LowerBound:
    # Minute A: 1, 2, 3 replicas serve 0, 90, 100 of 100; minute B: 1, 2 serve 50, 100 of 100.
    return LowerBound(
        (MinuteCurve(60.0, 100, (0, 90, 100)), MinuteCurve(60.0, 100, (50, 100))), 200, GPUS
    )


@pytest.mark.parametrize(
    ("attainment", "replica_seconds"),
    [
        (1.0, 300.0),  # 3 + 2 replicas for a minute each
        (0.95, 240.0),  # 10 may miss: A's third replica costs 10 for 60 s, the cheapest loss
        # 20 may miss: then B's second replica (50 per 60 s) for a fifth of the minute
        (0.90, 228.0),
        (0.0, 120.0),  # everything may miss: one replica each minute, never fewer
    ],
)
def test_bound_is_the_relaxation_worked_by_hand(attainment: float, replica_seconds: float) -> None:
    b = two_minutes()
    assert b.replica_seconds(attainment) == pytest.approx(replica_seconds)
    assert b.gpu_hours(attainment) == pytest.approx(replica_seconds * GPUS / 3600)


def test_attainment_full_service_cannot_reach_is_infinite() -> None:
    b = LowerBound((MinuteCurve(60.0, 100, (40, 98)),), 100, GPUS)
    assert math.isinf(b.gpu_hours(0.99))
    assert b.gpu_hours(0.98) == pytest.approx(120 * GPUS / 3600)


def test_a_point_under_the_hull_is_never_cheaper_than_the_hull() -> None:
    # 2 replicas serve only 10 of 100: on the way from 3 to 1, the hull skips that point, so
    # losing 50 requests costs half of the 3 -> 1 step (60 replica-seconds), not 3 -> 2 for 90.
    b = LowerBound((MinuteCurve(60.0, 100, (0, 10, 100)),), 100, GPUS)
    assert b.replica_seconds(0.5) == pytest.approx(120.0)


def test_static_needs_follow_the_served_curves() -> None:
    b = two_minutes()
    assert b.minute_needs(0.99) == [3, 2]
    assert b.minute_needs(0.9) == [2, 2]
    assert b.warm_start(60.0, 0.5) == 2


def test_the_warm_fleet_covers_the_minutes_before_a_first_scale_up() -> None:
    # one replica serves minute 0, minute 1 needs 3: a 195 s lead starts every policy with 3
    ramp = LowerBound((MinuteCurve(60.0, 10, (10,)), MinuteCurve(60.0, 10, (0, 5, 10))), 20, GPUS)
    assert ramp.warm_start(60.0) == 1
    assert ramp.warm_start(195.0) == 3


def test_a_minute_no_fleet_fully_serves_needs_its_share_of_what_the_largest_serves() -> None:
    # 40 replicas serve 98 of 100 (two long prefills meeting miss at any size): 99% of those 98
    # is 98 at 4 replicas, not "never" (which sized static and the warm start at the maximum)
    b = LowerBound((MinuteCurve(60.0, 100, (40, 80, 97, 98, 98)),), 100, GPUS)
    assert b.minute_needs(0.99) == [4]
    assert b.minute_needs(0.9) == [3]


def stepped(count: int) -> tuple[dict[int, int], list[int]]:
    """A minute like prefill-heavy's: served rises to 14 replicas, is flat over two more, then
    rises slowly again up to 40 (fewer long prefills meeting on one replica)."""
    calls: list[int] = []

    def serve(n: int) -> int:
        calls.append(n)
        if n <= 14:
            return min(count, n * 60)
        return 840 + (n - 16) * 2 if n > 16 else 840

    return search_counts(serve, count, guess=10, top=40), calls


def test_the_search_goes_past_a_plateau_short_of_the_whole_minute() -> None:
    got, calls = stepped(1000)
    assert got[40] == 888  # the top is simulated, not filled in from the plateau's 840
    assert got[18] == 844 and got[20] == 848 and got[24] == 856 and got[32] == 872
    assert len(calls) == len(set(calls))  # no count simulated twice
    curve = filled_curve(got)
    assert len(curve) == 40 and curve[-1] == 888
    # counts between the steps take the next higher simulated count (an overestimate)
    assert curve[25 - 1] == got[32] and curve[17 - 1] == got[18]
    assert list(curve) == sorted(curve)


def test_a_plateau_that_serves_the_whole_minute_ends_the_search() -> None:
    got, calls = stepped(600)
    assert max(calls) == 10 and got[10] == 600  # the guess already serves it all


def test_below_the_search_the_lowest_simulated_count_stands_in() -> None:
    # down from the guess until under a fifth is served; below that, the lowest count's value
    assert filled_curve({3: 10, 4: 50, 5: 100}) == (10, 10, 10, 50, 100)
    assert filled_curve({1: 5, 3: 30, 4: 20}) == (5, 30, 30, 30)  # never less than with fewer


def test_no_policy_comes_in_under_the_bound() -> None:
    # A bug in the bound would show as a policy cheaper than it at the policy's own attainment.
    trace = default_workload(7).scaled(1.0, duration=420, max_tokens=SC.max_model_len)
    bound = lower_bound(SC, trace)
    initial = bound.warm_start(warm_lead(SC))
    runs: list[Policy] = [
        Tokenscale(SC),
        Static(max(bound.minute_needs())),
        Static(1),
        Hpa(40.0),
        Kpa(24.0),
        Kpa(24.0, tick=2.0),
        Apa(16.0),
        Apa(16.0, "2024"),
    ]
    for policy in runs:
        r = simulate(trace, SC, policy, initial)
        floor = bound.gpu_hours(r.slo_attainment)
        assert r.gpu_hours >= floor * (1 - 1e-12), (policy.name, policy.config, r.row(), floor)
    # and the bound is not vacuous: above zero and below the peak provisioning
    assert 0 < bound.gpu_hours(0.99) < simulate(trace, SC, runs[1], initial).gpu_hours

"""The burst reserve: rises remembered from the service's own arrival rate (virtual time)."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_scaling import PLAN, SPEC, TICK, run
from tokenscale.domain.burst_reserve import (
    BurstMemory,
    rate_within_noise,
    remember,
    reserved_rate,
)
from tokenscale.domain.scaling import Decision
from tokenscale.domain.scaling_constants import CONSTANTS
from tokenscale.domain.scaling_model import service_model

COLD = 120.0
MAX_RISE = CONSTANTS.burst_max_rise
HALF_LIFE_S = CONSTANTS.burst_half_life_s


def feed(rates: list[float], memory: BurstMemory | None = None, t0: float = 0.0) -> BurstMemory:
    mem = memory or BurstMemory()
    for i, rate in enumerate(rates):
        mem = remember(mem, t0 + i * TICK, rate, COLD)
    return mem


def test_a_rise_within_a_cold_start_is_remembered_with_the_peak() -> None:
    mem = feed([10.0] * 8 + [12.0, 15.0])
    assert mem.rise == pytest.approx(1.5)
    assert mem.peak == pytest.approx(15.0)
    # Samples older than one cold start are dropped: 120 s / 15 s + the tick itself.
    assert len(mem.samples) == 9
    assert mem.samples[-1] == (9 * TICK, 15.0)


def test_a_fall_within_a_cold_start_is_a_swing_the_reserve_keeps() -> None:
    # A batch job ends, 24 -> 3 req/s: the next one starts as fast, so the fleet keeps the
    # hard throughput for 24 req/s through the lull (the service's first rise is then covered).
    mem = feed([24.0] * 9 + [3.0])
    assert mem.rise == pytest.approx(8.0)
    # The peak has decayed over the one tick since 24 was last read.
    assert reserved_rate(mem, 3.0) == pytest.approx(24.0 * 0.5 ** (TICK / HALF_LIFE_S))
    # Near idle, the fall is measured against the rate floor, not against zero.
    assert feed([0.5] * 9 + [0.0]).rise == pytest.approx(5.0)


def test_a_slow_ramp_is_not_a_burst() -> None:
    # 1% a tick: within two minutes the rate rises 8%, whatever it rose over the hour.
    mem = feed([5.0 * 1.01**i for i in range(240)])
    assert mem.rise == pytest.approx(1.01**8, rel=1e-6)
    # Nor is a slow fall (the evening of a day).
    assert feed([50.0 * 0.99**i for i in range(240)]).rise == pytest.approx(0.99**-8, rel=1e-6)


def test_the_memory_halves_its_excess_each_half_life() -> None:
    mem = feed([3.0] * 9 + [24.0])
    assert mem.rise == pytest.approx(8.0)
    later = remember(mem, mem.updated_at + HALF_LIFE_S, 3.0, COLD)  # type: ignore[operator]
    assert later.rise == pytest.approx(1.0 + 7.0 / 2)
    assert later.peak == pytest.approx(12.0)


def test_near_idle_noise_is_not_a_fifty_fold_burst() -> None:
    mem = feed([0.0, 0.01, 0.5])
    assert mem.rise == pytest.approx(5.0)  # 0.5 over the 0.1 req/s floor
    assert feed([0.0] * 8 + [50.0]).rise == MAX_RISE


def test_the_reserve_stops_at_the_peak_and_never_below_the_rate() -> None:
    mem = BurstMemory(rise=8.0, peak=24.0)
    assert reserved_rate(mem, 3.0) == 24.0
    assert reserved_rate(mem, 2.0) == 16.0
    assert reserved_rate(mem, 30.0) == 30.0  # past the peak: the rate itself
    assert reserved_rate(BurstMemory(), 5.0) == 5.0  # no history: nothing reserved
    # Started from the highest rate the window's count allows, still no farther than the peak.
    assert reserved_rate(mem, 2.0, 2.5) == 20.0
    assert reserved_rate(mem, 2.7, rate_within_noise(2.7, 60.0, 4.0)) == 24.0
    assert reserved_rate(BurstMemory(), 5.0, 6.0) == 5.0  # no history: still nothing


def test_the_rate_the_window_does_not_rule_out_is_its_poisson_upper_deviation() -> None:
    # 3 req/s over 60 s is 180 arrivals; 4 deviations of the count are 4 x sqrt(180) = 53.7.
    assert rate_within_noise(3.0, 60.0, 4.0) == pytest.approx(3.0 + 53.67 / 60.0, abs=1e-3)
    # The longer the window, the closer its count pins the rate.
    assert rate_within_noise(30.0, 60.0, 4.0) / 30.0 < rate_within_noise(3.0, 60.0, 4.0) / 3.0
    assert rate_within_noise(0.0, 60.0, 4.0) == 0.0
    assert rate_within_noise(3.0, 60.0, 0.0) == 3.0


@given(
    st.lists(st.floats(0.0, 500.0, allow_nan=False), min_size=1, max_size=60),
    st.floats(0.0, 500.0, allow_nan=False),
)
def test_the_reserve_is_bounded_by_the_highest_rate_seen(rates: list[float], now: float) -> None:
    mem = feed(rates)
    assert 1.0 <= mem.rise <= MAX_RISE
    assert now <= reserved_rate(mem, now) <= max(now, max(rates))


def test_the_memory_round_trips_and_survives_a_hand_edited_status() -> None:
    mem = feed([3.0] * 9 + [24.0, 20.0])
    assert BurstMemory.from_dict(json.loads(json.dumps(mem.to_dict()))) == mem
    assert BurstMemory.from_dict(None) == BurstMemory()
    assert BurstMemory.from_dict("junk") == BurstMemory()  # type: ignore[arg-type]
    junk = BurstMemory.from_dict({"samples": [["x", 1], [1, 2]], "rise": "nan?", "peak": 3})
    assert junk.samples == ((1.0, 2.0),) and junk.rise == 1.0
    assert BurstMemory.from_dict({"rise": math.inf}) == BurstMemory()
    edited = BurstMemory.from_dict({"rise": 1e9, "peak": -4})
    assert edited == BurstMemory(rise=1e9)
    # The next tick holds it to the largest rise remembered.
    assert remember(edited, 0.0, 5.0, COLD).rise == MAX_RISE


def run_rates(rates: list[float], replicas: int, forget: bool = False) -> Decision:
    """The last of test_scaling.run's decisions."""
    return run(rates, replicas, forget=forget)[-1]


def test_after_an_on_off_cycle_the_fleet_keeps_the_hard_throughput_for_the_next_on() -> None:
    on, off = [24.0] * 20, [3.0] * 40
    d = run_rates(on + off + on + off, 2)
    mem = d.state.burst
    assert mem.rise > 5.0 and "reserve for" in d.reason
    full = service_model(SPEC, PLAN, 1155, 211).throughput(d.concurrency_cap)
    kept = reserved_rate(mem, 3.0)
    assert 18.0 < kept <= mem.peak < 24.0  # 24 req/s, decayed over 10 minutes
    assert d.replicas == math.ceil(kept / full)
    # Without the memory the fleet is sized for 3 req/s: one replica.
    assert run_rates(on + off + on + off, 2, forget=True).replicas == 1 < d.replicas


def test_a_calm_service_pays_nothing_for_the_reserve() -> None:
    jitter = [20.0 * (1.04 if i % 3 else 0.97) for i in range(80)]
    d = run_rates(jitter, 4)
    assert d.state.burst.rise < 1.1
    assert "reserve" not in d.reason
    assert d.replicas == run_rates(jitter, 4, forget=True).replicas


def test_a_lull_read_low_by_its_window_still_keeps_the_next_phase_covered() -> None:
    # The lull's first minutes read 4 req/s (a swing of 30 / 4 = 7.5), its last six 2.7. The
    # rate read times the swing (6.5 by then) reserves 17.5 req/s, 2.4 full replicas: three.
    # The highest rate a 60 s window counting 2.7 req/s allows (3.6) reserves 22.9, 3.2: four.
    # Six minutes at 2.7: past the scale-down stabilization's hold.
    rates = [30.0] * 20 + [4.0] * 14 + [2.7] * 24
    d = run_rates(rates, 2)
    mem = d.state.burst
    read_only = reserved_rate(mem, 2.7)
    noise = rate_within_noise(2.7, CONSTANTS.metrics_window_s, CONSTANTS.surge_sigmas)
    kept = reserved_rate(mem, 2.7, noise)
    assert read_only < kept <= mem.peak
    assert f"reserve for {kept:.1f}" in d.reason
    # The hard throughput per replica the decision used (the learned service factor in it).
    found = re.search(r"at ([0-9.]+) req/s per full replica", d.reason)
    assert found is not None
    full = float(found.group(1))
    assert d.replicas == math.ceil(kept / full) > math.ceil(read_only / full)

"""The drawn world: hardware the policy is not told about, and long-tailed cold starts."""

from __future__ import annotations

import numpy as np
import pytest

from tokenscale.bench.fleet import Fleet
from tokenscale.bench.metrics import Recorder
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.workload import default_workload
from tokenscale_sim.profile import perturbed


def test_drawn_hardware_is_within_25_percent_and_repeatable() -> None:
    known = Scenario()
    speeds = set()
    for seed in range(1, 9):
        drawn = Scenario(world="drawn", seed=seed)
        decode = known.belief.weight_s / drawn.profile.weight_s
        prefill = known.belief.flop_s_per_token / drawn.profile.flop_s_per_token
        assert 0.75 <= decode <= 1.25 and 0.75 <= prefill <= 1.25
        assert drawn.profile == Scenario(world="drawn", seed=seed).profile
        speeds.add(round(decode, 6))
    assert len(speeds) == 8  # each seed its own hardware
    assert known.profile == known.belief


def test_perturbed_scales_memory_and_compute_terms() -> None:
    base = Scenario().belief
    p = perturbed(base, 0.8, 1.25)
    assert p.weight_s == pytest.approx(base.weight_s / 0.8)
    assert p.kv_read_s_per_token == pytest.approx(base.kv_read_s_per_token / 0.8)
    assert p.attn_s_per_pair == pytest.approx(base.attn_s_per_pair / 1.25)
    with pytest.raises(ValueError, match="must be > 0"):
        perturbed(base, 0.0, 1.0)


def test_cold_starts_are_long_tailed_around_the_spec_value() -> None:
    sc = Scenario(world="drawn")
    trace = default_workload(1).scaled(1.0, duration=60)
    rec = Recorder(trace, sc.tick_s)
    fleet = Fleet(sc.profile, trace, rec, 120.0, 2, 1, sc.cold_start_sigma)
    fleet.start(400, 0.0)
    waits = np.array([r.ready_at for r in fleet.alive])
    assert np.median(waits) == pytest.approx(120.0, rel=0.1)
    assert np.percentile(waits, 99) > 200.0  # sigma 0.35: p99 about 2.3x the median
    known = Fleet(sc.belief, trace, rec, 120.0, 2, 1)
    known.start(3, 0.0)
    assert {r.ready_at for r in known.alive} == {120.0}

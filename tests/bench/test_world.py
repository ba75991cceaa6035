"""The drawn world: hardware the policy is not told about, and long-tailed cold starts."""

from __future__ import annotations

import numpy as np
import pytest

from tokenscale.bench.fleet import Fleet
from tokenscale.bench.metrics import Recorder, percentile
from tokenscale.bench.policies import Tokenscale
from tokenscale.bench.runner import simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.workload import default_workload
from tokenscale.domain.observation import Observation
from tokenscale_contract import histogram_buckets as hb
from tokenscale_sim.engine import FinishedRequest
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


def test_each_pods_step_noise_has_mean_one() -> None:
    """The drawn world's per-step multipliers average to 1 (the roofline stays the mean step
    time) and vary by about sigma; each pod draws its own."""
    sc = Scenario(world="drawn")
    trace = default_workload(1).scaled(1.0, duration=60)
    rec = Recorder(trace, sc.tick_s)
    fleet = Fleet(sc.profile, trace, rec, 120.0, 2, 1, sc.cold_start_sigma, sc.step_noise_sigma)
    fleet.start(8, 0.0, warm=True)
    draws = [np.array(r.engine._noise) for r in fleet.alive]
    pooled = np.concatenate(draws)  # 32 768 draws: the mean's standard error is 0.0006
    assert abs(pooled.mean() - 1.0) < 0.002, pooled.mean()  # lognormal(0, 0.1) would give 1.005
    assert 0.09 < pooled.std() < 0.11
    assert not np.array_equal(draws[0], draws[1])
    assert Scenario().step_noise_sigma == 0.0


# vLLM's default bounds, whose coarse steps the hand-worked numbers below use.
DEFAULTS = {
    hb.TTFT_FAMILY: list(hb.TIME_TO_FIRST_TOKEN_BUCKETS),
    hb.ITL_FAMILY: list(hb.INTER_TOKEN_LATENCY_BUCKETS),
}


def _finished(rid: int, arrival: float, mean_itl: float, tokens: int = 11) -> FinishedRequest:
    first = arrival + 0.2
    return FinishedRequest(
        req_id=rid,
        arrival=arrival,
        scheduled_at=arrival,
        first_token_at=first,
        finished_at=first + mean_itl * (tokens - 1),
        prompt_tokens=100,
        generated_tokens=tokens,
        finish_reason="length",
        preemptions=0,
    )


def test_histogram_signals_read_as_histogram_quantile_would() -> None:
    """90 requests averaging 20 ms per token (bucket le=0.025) and 10 averaging 280 ms (le=0.3):
    p99 has rank 99, inside (0.2, 0.3] holding counts 90..100 -> 0.2 + 0.1 x 9/10 = 0.29 s, where
    the exact reader says 0.28 (nearest rank). A one-token answer has no decode: not counted."""
    trace = default_workload(1).scaled(1.0, duration=60)
    rec = Recorder(trace, 15.0, signals="prometheus", buckets=DEFAULTS)
    for rid in range(100):
        rec._finish(_finished(rid, float(trace.arrival[rid]), 0.02 if rid < 90 else 0.28))
    rec._finish(_finished(100, float(trace.arrival[100]), 0.0, tokens=1))
    rec._first(0, float(trace.arrival[0]) + 0.5)  # TTFT 0.5 s: bucket (0.25, 0.5]
    rec.close_bucket((1.0, 2.0, 0.5))
    ttft, itl = rec.window_quantiles(99.0)
    assert itl == pytest.approx(0.29)
    assert percentile(rec.window()[1], 99.0) == pytest.approx(0.28)
    assert ttft == pytest.approx(0.25 + 0.25 * 0.99)
    with pytest.raises(ValueError, match="signals 'raw'"):
        Recorder(trace, 15.0, signals="raw")


def test_a_scrape_delay_hides_the_newest_interval_and_its_gauges() -> None:
    """With a 15 s delay on a 15 s tick, what closed last is not yet seen: the window and the
    gauges are one scrape behind; without delay they are current."""
    trace = default_workload(1).scaled(1.0, duration=60)
    late = Recorder(trace, 15.0, signals="prometheus", scrape_delay_s=15.0, buckets=DEFAULTS)
    now = Recorder(trace, 15.0, signals="prometheus", buckets=DEFAULTS)
    for rec in (late, now):
        for rid in range(10):
            rec._finish(_finished(rid, 0.0, 0.02))
        rec.close_bucket((1.0, 0.0, 0.1))
        for rid in range(10, 20):
            rec._finish(_finished(rid, 0.0, 0.6))
        rec.close_bucket((9.0, 4.0, 0.9))
    assert now.window_quantiles(99.0)[1] == pytest.approx(0.5 + 0.25 * (19.8 - 10) / 10)
    assert late.window_quantiles(99.0)[1] == pytest.approx(0.01 + 0.015 * 9.9 / 10)
    assert now.gauges_seen((5.0, 5.0, 0.5)) == (5.0, 5.0, 0.5)
    assert late.gauges_seen((5.0, 5.0, 0.5)) == (1.0, 0.0, 0.1)


class _Watching(Tokenscale):
    """Tokenscale, keeping what each tick read beside what an exact reader would have read."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        self.seen: list[tuple[float | None, float | None, float | None]] = []

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        exact = percentile(rec.window()[1], 99)
        self.seen.append((obs.itl_s, rec.window_quantiles(99.0)[1], exact))
        return super().decide(now, obs, rec)


def test_a_drawn_run_reads_histograms_and_repeats_with_its_seed() -> None:
    """In the drawn world the policy's ITL is the p99 of vLLM's per-request histogram, which is
    not the exact p99 of the same requests; the same seed gives the same run."""
    sc = Scenario(world="drawn", seed=3)
    trace = default_workload(7).scaled(1.0, duration=300, max_tokens=sc.max_model_len)
    a, b = _Watching(sc), _Watching(sc)
    ra, rb = simulate(trace, sc, a, 3), simulate(trace, sc, b, 3)
    assert ra.row() == rb.row() and a.seen == b.seen
    read = [(obs, hist, exact) for obs, hist, exact in a.seen if obs is not None]
    assert read, "no tick read an ITL"
    assert all(obs == hist for obs, hist, _ in read)
    assert any(obs != exact for obs, _, exact in read)


def test_the_engines_buckets_are_the_operators_unless_asked_for_vllms() -> None:
    sc = Scenario(world="drawn")
    assert sc.histogram_buckets == hb.slo_buckets(sc.ttft_s, sc.itl_s)
    assert Scenario(world="drawn", buckets="vllm").histogram_buckets == DEFAULTS
    with pytest.raises(ValueError, match="buckets 'fine': choose objective or vllm"):
        _ = Scenario(buckets="fine").histogram_buckets

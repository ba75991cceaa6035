"""decide(): time moves numerically, never by sleeping."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import replace

import pytest

from tokenscale.adapters.settings import AutoscaleSettings
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.burst_reserve import BurstMemory
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.probes import DEFAULT_COLD_START_SECONDS
from tokenscale.domain.scaling import Decision, Observation, ScalerState, decide
from tokenscale.domain.scaling_constants import CONSTANTS, for_window
from tokenscale.domain.scaling_model import service_model

TICK = 15.0


def make_spec(**scaling: object) -> InferenceServiceSpec:
    base: dict[str, object] = {"minReplicas": 1, "maxReplicas": 40}
    base.update(scaling)
    return InferenceServiceSpec.model_validate(
        {
            "model": {
                "source": "hf://meta-llama/Llama-3.1-70B-Instruct",
                "architecture": "llama-3.1-70b",
            },
            "quantization": {"method": "fp8"},
            "resources": {"gpu": "h100-80gb"},
            "slo": {"ttftSeconds": 1.0, "itlSeconds": 0.05},
            "scaling": base,
        }
    )


SPEC = make_spec()
PLAN = plan(SPEC)
assert isinstance(PLAN, Plan)


def obs(
    t: float,
    rate: float,
    ready: int,
    *,
    waiting: float = 0.0,
    ttft: float = 0.3,
    itl: float = 0.03,
    starting: tuple[float, ...] = (),
    cap: int | None = 40,
    schedulable: int | None = None,
) -> Observation:
    # Little's law with ~6 s per request: 20 req/s -> 120 running.
    running = min(rate * 6.0, ready * (cap or 40))
    return Observation(
        sampled_at=t,
        ttft_s=ttft,
        itl_s=itl,
        arrival_rate=rate,
        prompt_tokens=1155,
        output_tokens=211,
        running=running,
        waiting=waiting,
        kv_cache_usage=0.3,
        ready_replicas=ready,
        starting_since=starting,
        current_replicas=ready + len(starting),
        current_cap=cap,
        schedulable_replicas=schedulable,
    )


def run(
    rates: list[float],
    start: int,
    spec: InferenceServiceSpec = SPEC,
    forget: bool = False,
    **kw: object,
) -> list[Decision]:
    """Drive decide() one tick per rate, replicas becoming ready at once. `forget` clears the
    burst memory before each tick (what the autoscaler did without it)."""
    state, replicas, out = ScalerState(), start, []
    for i, rate in enumerate(rates):
        now = i * TICK
        if forget:
            state = replace(state, burst=BurstMemory())
        d = decide(spec, PLAN, obs(now, rate, replicas, **kw), state, now)  # type: ignore[arg-type]
        out.append(d)
        state, replicas = d.state, d.replicas
    return out


def test_every_decision_has_a_reason() -> None:
    for d in run([5, 10, 30, 30, 2, 0], 2):
        assert d.reason


def test_burst_scales_up_at_once_and_never_down_during_it() -> None:
    steady = run([20.0] * 8, 5)
    n = steady[-1].replicas
    state = steady[-1].state
    t = 8 * TICK
    d = decide(SPEC, PLAN, obs(t, 60.0, n, waiting=150, ttft=3.0), state, t)
    assert d.burst and d.replicas >= 2 * n
    assert "burst" in d.reason
    # The burst ends at once; within the hold, no scale-down.
    d2 = decide(SPEC, PLAN, obs(t + TICK, 5.0, d.replicas), d.state, t + TICK)
    assert d2.replicas == d.replicas and d2.burst


def test_slow_ramp_tracks_load_monotonically() -> None:
    rates = [4.0 * 1.05**i for i in range(40)]
    ds = run(rates, 2)
    counts = [d.replicas for d in ds]
    assert counts == sorted(counts)
    # Enough capacity at the end: ~5 req/s per replica at 80% utilization, not wildly more.
    assert rates[-1] / 5.5 <= counts[-1] <= rates[-1] / 2.5


def test_drop_to_idle_holds_one_cold_start_then_halves_per_step() -> None:
    ds = run([45.0] * 4 + [0.0] * 40, 4)
    high = ds[3].replicas
    # The recommendation of 10 is far above a need of 0: a passed burst, held for the cold
    # start (120 s, 8 ticks after the last one made at t = 45 s), not the whole 300 s window.
    hold_ticks = int(DEFAULT_COLD_START_SECONDS / TICK)
    assert all(d.replicas == high for d in ds[4 : 4 + hold_ticks - 1])
    assert ds[4 + hold_ticks - 1].replicas < high
    after = [d.replicas for d in ds[4 + hold_ticks - 1 :]]
    assert after[-1] == SPEC.scaling.min_replicas
    for a, b in zip([high, *after], after, strict=False):
        assert b >= a // 2


def test_need_within_20_percent_keeps_the_whole_window() -> None:
    # 30 -> 25.5 req/s: need 5.3 -> 4.6-4.9, past the 10% band below 6 but within 20% of
    # it, so the 6 recommended until t = 75 s holds for the full 300 s window (to t = 375 s).
    ds = run([30.0] * 6 + [25.5] * 30, 6)
    assert all(5.0 < d.desired_unbounded <= 6.0 for d in ds[:6])
    assert all(4.5 < d.desired_unbounded < 6 * 0.9 for d in ds[6:25])
    assert [d.replicas for d in ds[:25]] == [6] * 25
    assert ds[25].replicas == 5


def test_a_passed_burst_in_the_window_holds_only_a_cold_start() -> None:
    # Need 6 and a 12 from a burst 150 s ago (beyond the 120 s cold start): 12 no longer
    # holds; what is left holds at most ceil(6 x 1.2) = 8.
    state = ScalerState(recommendations=((0.0, 12), (60.0, 6)), concurrency_cap=120)
    d = decide(SPEC, PLAN, obs(150.0, 26.0, 12, cap=120), state, 150.0)
    assert d.desired_unbounded <= 6.5
    assert d.replicas <= 8
    # The same 12 made 100 s ago is within the cold start and holds.
    recent = ScalerState(recommendations=((50.0, 12),), concurrency_cap=120)
    assert decide(SPEC, PLAN, obs(150.0, 26.0, 12, cap=120), recent, 150.0).replicas == 12


@pytest.mark.parametrize("age", [61.0, 600.0])
def test_stale_metrics_hold(age: float) -> None:
    now = 1000.0
    o = replace(obs(now - age, 0.0, 6), current_replicas=6)
    d = decide(SPEC, PLAN, o, ScalerState(), now)
    assert d.replicas == 6 and "stale" in d.reason


def test_missing_metrics_never_scale_down() -> None:
    o = Observation(sampled_at=None, ready_replicas=7, current_replicas=7)
    d = decide(SPEC, PLAN, o, ScalerState(concurrency_cap=40), 50.0)
    assert d.replicas == 7 and "missing" in d.reason and d.concurrency_cap == 40


def test_capacity_limit_caps_and_says_so() -> None:
    d = decide(SPEC, PLAN, obs(0.0, 60.0, 4, waiting=50, schedulable=6), ScalerState(), 0.0)
    assert d.replicas == 6
    assert d.capacity_limited and "only 6 can be scheduled" in d.reason


def test_cold_start_in_progress_counts_as_coming_capacity() -> None:
    now = 600.0
    high_ttft = {"waiting": 20.0, "ttft": 1.8}
    # Rate need fits 10 replicas; TTFT is high only because 4 replicas are still starting.
    coming = obs(now, 30.0, 6, starting=(now - 30,) * 4, **high_ttft)  # type: ignore[arg-type]
    d = decide(SPEC, PLAN, coming, ScalerState(concurrency_cap=40), now)
    assert "TTFT" not in d.reason.split(";")[0]
    # The same TTFT with nothing starting (or starting past coldStartSeconds) boosts.
    stuck = obs(now, 30.0, 6, starting=(now - 500,) * 4, **high_ttft)  # type: ignore[arg-type]
    d2 = decide(SPEC, PLAN, stuck, ScalerState(concurrency_cap=40), now)
    assert d2.replicas > d.replicas and d2.reason.startswith("TTFT p95 1.80 s > 1.00 s")


def test_an_unset_cold_start_is_the_model_cache_read_plus_warm_up() -> None:
    """Replicas that started 250 s ago: past the 120 s default, so TTFT boosts; with the model
    cache (70B fp8 on H100: its bf16 checkpoint, 131.5 GiB at 1 GiB/s + 180 s = 312 s) they are
    still coming, and the decision waits for them."""
    now = 600.0
    starting = obs(now, 30.0, 6, starting=(now - 250,) * 4, waiting=20.0, ttft=1.8)
    plain = decide(SPEC, PLAN, starting, ScalerState(concurrency_cap=40), now)
    assert plain.reason.startswith("TTFT p95 1.80 s > 1.00 s")
    doc = SPEC.model_dump(by_alias=True, exclude_none=True)
    doc["model"] = {
        **doc["model"],
        "source": "s3://weights/llama-70b",
        "cache": {"storageClassName": "rwx"},
    }
    cached = InferenceServiceSpec.model_validate(doc)
    d = decide(cached, PLAN, starting, ScalerState(concurrency_cap=40), now)
    assert "TTFT" not in d.reason.split(";")[0] and d.replicas < plain.replicas


def test_no_scale_down_while_requests_queue_past_the_ttft_objective() -> None:
    # 8 ready and 4 starting, a need of ~6 and a passed burst (its 12 older than the cold
    # start): a quiet service goes down; with 5 queued at TTFT 1.6 s it keeps every replica
    # (the TTFT boost waits for the starting ones, so the need alone would have cut them).
    now, state = 600.0, ScalerState(recommendations=((0.0, 12),), concurrency_cap=40)
    starting = (now - 30.0,) * 4
    quiet = decide(SPEC, PLAN, obs(now, 26.0, 8, starting=starting), state, now)
    assert quiet.replicas < 12
    queued_obs = obs(now, 26.0, 8, starting=starting, waiting=5.0, ttft=1.6)
    queued = decide(SPEC, PLAN, queued_obs, state, now)
    assert queued.replicas == 12
    assert "no scale-down while TTFT p95 1.60 s > 1.00 s with 5 queued" in queued.reason
    # A queue within the objective is no reason to keep replicas the need does not ask for.
    fast_obs = obs(now, 26.0, 8, starting=starting, waiting=5.0, ttft=0.6)
    assert decide(SPEC, PLAN, fast_obs, state, now).replicas == quiet.replicas


def test_no_scale_down_while_the_objective_is_missed_and_a_replica_starts() -> None:
    """The need fell below the count (a window's mean read between requests) while TTFT is over
    the objective with nothing queued now and 4 replicas still starting: they stay until they
    serve, since the miss has not met them yet. The same with ITL. Once started (older than the
    cold start) or with the objective met, the need decides."""
    now, state = 600.0, ScalerState(recommendations=((0.0, 12),), concurrency_cap=40)
    starting = (now - 30.0,) * 4
    quiet = decide(SPEC, PLAN, obs(now, 26.0, 8, starting=starting), state, now)
    assert quiet.replicas < 12
    slow_first = decide(SPEC, PLAN, obs(now, 26.0, 8, starting=starting, ttft=1.6), state, now)
    assert slow_first.replicas == 12
    assert "no scale-down while TTFT p95 1.60 s > 1.00 s with 4 replica(s) starting" in (
        slow_first.reason
    )
    slow_tokens = decide(SPEC, PLAN, obs(now, 26.0, 8, starting=starting, itl=0.08), state, now)
    assert slow_tokens.replicas == 12
    assert "no scale-down while ITL p95 80 ms > 50 ms with 4 replica(s) starting" in (
        slow_tokens.reason
    )
    # Started long ago (past the cold start: stuck, not on its way): the need decides.
    stuck = (now - 3600.0,) * 4
    late = decide(SPEC, PLAN, obs(now, 26.0, 12, starting=stuck, ttft=1.6), state, now)
    assert late.replicas < 12 and "no scale-down" not in late.reason


def test_no_replica_past_the_first_while_the_model_cache_fills() -> None:
    """A replica added while the fill runs would wait for it in its init container: the load
    that asks for 6 replicas gets 1 (a new service) and keeps 3 (replicas serving an earlier
    copy), and says why; once filled, the need is met."""
    now = 600.0
    fresh = replace(obs(now, 30.0, 0, cap=40), current_replicas=1, model_filling=True)
    gated = decide(SPEC, PLAN, fresh, ScalerState(), now)
    assert gated.replicas == 1
    assert "model cache filling: 1 until the copy is complete" in gated.reason
    serving = replace(obs(now, 30.0, 3, cap=40), model_filling=True)
    assert decide(SPEC, PLAN, serving, ScalerState(), now).replicas == 3
    filled = decide(SPEC, PLAN, replace(serving, model_filling=False), ScalerState(), now)
    assert filled.replicas > 3
    # Without metrics (the _hold path) the gate holds too.
    no_data = Observation(current_replicas=1, ready_replicas=0, model_filling=True)
    held = decide(make_spec(minReplicas=4), PLAN, no_data, ScalerState(), now)
    assert held.replicas == 1 and "model cache filling" in held.reason


def test_flapping_load_at_the_tolerance_edge_does_not_flap() -> None:
    ds = run([27.0, 29.0] * 40, 9)
    # The first ten minutes learn the service and ITL factors; after that, +/-4% load
    # alternating every tick must not move the count.
    counts = [d.replicas for d in ds[42:]]
    changes = sum(1 for a, b in itertools.pairwise(counts) if a != b)
    assert changes <= 1


def test_advisory_mode_computes_but_does_not_apply() -> None:
    spec = make_spec(mode="advisory")
    auto = decide(SPEC, PLAN, obs(0.0, 40.0, 3), ScalerState(), 0.0)
    adv = decide(spec, PLAN, obs(0.0, 40.0, 3), ScalerState(), 0.0)
    assert adv.replicas == auto.replicas > 3
    assert not adv.applied and auto.applied and adv.mode == "advisory"


def test_off_mode_holds_min_replicas() -> None:
    spec = make_spec(mode="off", minReplicas=2)
    d = decide(spec, PLAN, obs(0.0, 40.0, 9, waiting=100), ScalerState(), 0.0)
    assert d.replicas == 2 and not d.applied and "off" in d.reason


def test_state_round_trips_through_a_plain_dict() -> None:
    d = run([10.0, 20.0, 40.0], 2)[-1]
    data = json.loads(json.dumps(d.state.to_dict()))
    assert ScalerState.from_dict(data) == d.state
    assert ScalerState.from_dict(None) == ScalerState()
    junk = ScalerState.from_dict({"recommendations": [["x"], [1, 2]], "concurrencyCap": "bad"})
    assert junk.recommendations == ((1.0, 2),) and junk.concurrency_cap is None


def test_cap_is_seeded_at_the_kv_room_for_observed_lengths() -> None:
    d = decide(SPEC, PLAN, replace(obs(0.0, 10.0, 3), current_cap=None), ScalerState(), 0.0)
    # 244 510 cache tokens / (1155 + 211) tokens per request = 178.
    assert d.concurrency_cap == PLAN.kv_cache_tokens // (1155 + 211) == 178
    assert "seeded" in d.reason


def test_cap_steps_down_when_itl_is_over_and_up_when_full_and_fast() -> None:
    state = ScalerState(concurrency_cap=40)
    down = decide(SPEC, PLAN, obs(0.0, 20.0, 4, itl=0.062), state, 0.0)
    assert down.concurrency_cap == 30 and "cap 40 → 30" in down.reason
    # Not again before the settle period.
    again = decide(SPEC, PLAN, obs(TICK, 20.0, 4, itl=0.062), down.state, TICK)
    assert again.concurrency_cap == 30
    up = decide(SPEC, PLAN, obs(0.0, 40.0, 4, itl=0.02, waiting=10), state, 0.0)
    assert up.concurrency_cap == 44


def test_batch_tuning_off_uses_the_plan_cap() -> None:
    spec = make_spec(batch={"enabled": False})
    d = decide(spec, PLAN, obs(0.0, 20.0, 4, itl=0.09), ScalerState(), 0.0)
    assert d.concurrency_cap == PLAN.max_concurrency


def test_scale_from_zero_on_first_request() -> None:
    spec = make_spec(minReplicas=0)
    d = decide(spec, PLAN, obs(0.0, 0.5, 0, waiting=1), ScalerState(), 0.0)
    assert d.replicas >= 1


def test_burst_margin_sizes_for_the_hard_limit_of_a_small_cap() -> None:
    # A cap of 20 is below the ITL-feasible batch: the hard throughput X(20) binds, and the
    # fleet keeps 1.5x the arrival rate within it.
    spec = make_spec(batch={"enabled": False, "maxConcurrency": 20, "minConcurrency": 8})
    d = decide(spec, PLAN, obs(0.0, 20.0, 4, cap=20), ScalerState(), 0.0)
    assert "per full replica" in d.reason
    model = service_model(spec, PLAN, 1155, 211)
    full = model.throughput(20, d.state.service_factor)
    assert d.desired_unbounded == pytest.approx(20.0 * 1.5 / full, rel=1e-3)


def test_factors_learn_only_in_steady_state() -> None:
    hot = {"itl": 0.09}
    start = ScalerState(concurrency_cap=40)
    d = decide(SPEC, PLAN, obs(600.0, 20.0, 4, **hot), start, 600.0)  # type: ignore[arg-type]
    assert d.state.itl_factor > 1.0
    # A replica starting: the window mixes fleets, learn nothing.
    starting = obs(600.0, 20.0, 4, starting=(580.0,), **hot)  # type: ignore[arg-type]
    assert decide(SPEC, PLAN, starting, start, 600.0).state.itl_factor == 1.0
    # A scale event 30 s ago (within the 60 s metrics window): learn nothing either.
    moved = replace(start, last_scale_at=570.0)
    d2 = decide(SPEC, PLAN, obs(600.0, 20.0, 4, **hot), moved, 600.0)  # type: ignore[arg-type]
    assert d2.state.itl_factor == 1.0


def test_cap_holds_when_the_queue_already_misses_ttft() -> None:
    state = ScalerState(concurrency_cap=40)
    o = obs(0.0, 20.0, 4, itl=0.062, waiting=40, ttft=1.3)
    assert decide(SPEC, PLAN, o, state, 0.0).concurrency_cap == 40


def test_batch_tuning_off_keeps_the_static_cap_whatever_the_lengths() -> None:
    spec = make_spec(batch={"enabled": False})
    long = replace(obs(0.0, 5.0, 4, itl=0.02), prompt_tokens=6000, output_tokens=2000)
    d = decide(spec, PLAN, long, ScalerState(), 0.0)
    assert d.concurrency_cap == PLAN.max_concurrency


def test_stale_samples_hold_even_when_the_rates_ran_dry() -> None:
    # A Prometheus that stopped scraping still answers with the last gauges (their own time is
    # old) while every rate over the window is empty: the reason says stale, not missing.
    o = Observation(sampled_at=900.0, running=3.0, ready_replicas=4, current_replicas=4)
    d = decide(SPEC, PLAN, o, ScalerState(concurrency_cap=40), 1000.0)
    assert d.replicas == 4 and d.reason.startswith("metrics stale (100 s old)")


def test_the_metrics_window_sets_staleness_learning_and_cap_settling() -> None:
    now = 1000.0
    fresh_at_60 = replace(obs(now - 45.0, 0.0, 6), current_replicas=6)
    assert "stale" not in decide(SPEC, PLAN, fresh_at_60, ScalerState(), now).reason
    at_30 = for_window(30.0)
    assert "stale" in decide(SPEC, PLAN, fresh_at_60, ScalerState(), now, constants=at_30).reason
    assert (at_30.metrics_window_s, at_30.stale_after_s, at_30.cap_settle_s) == (30.0, 30.0, 30.0)
    assert for_window(60.0) == CONSTANTS  # the default window changes nothing
    with pytest.raises(ValueError, match="positive"):
        for_window(0.0)


@pytest.mark.parametrize(("window", "seconds"), [("30s", 30.0), ("1m", 60.0), ("2h", 7200.0)])
def test_window_setting_in_seconds(window: str, seconds: float) -> None:
    env = {"TOKENSCALE_PROMETHEUS_WINDOW": window}
    assert AutoscaleSettings.from_env(env).window_seconds == seconds


@pytest.mark.parametrize("window", ["0s", "90", "1.5m", "1d", "30s]"])
def test_malformed_window_setting_names_the_variable(window: str) -> None:
    with pytest.raises(ValueError, match=r"TOKENSCALE_PROMETHEUS_WINDOW: window .* like 30s"):
        AutoscaleSettings.from_env({"TOKENSCALE_PROMETHEUS_WINDOW": window})


def test_a_pipeline_replica_decodes_one_batch_per_stage() -> None:
    """405B bf16 on 2 nodes x 8 H100: 64 running sequences decode as two batches of 32, each
    at the traversal time of a batch of 32, and each stage carries half of every prefill."""
    raw = {
        "model": {"source": "hf://m/405", "architecture": "llama-3.1-405b"},
        "resources": {"gpu": "h100-80gb"},
        "slo": {"ttftSeconds": 2.0, "itlSeconds": 0.1},
    }
    spec = InferenceServiceSpec.model_validate(raw)
    group = plan(spec, multi_node=True)
    assert isinstance(group, Plan) and group.nodes == 2
    model = service_model(spec, group, 1000, 200)
    assert model.stages == 2
    assert model.decode_s(64) == model.steps.decode_itl(32, model.mean_context)
    rate = 1.0
    share = rate * model.prefill_s / 2
    assert model.itl(64, rate) == pytest.approx(model.decode_s(64) / (1 - share))
    # so a 2-stage replica serves more than one batch of the same per-token latency would
    one_stage = replace(model, stages=1)
    assert model.throughput(64) > one_stage.throughput(64)


def test_concurrency_need_reads_the_window_mean_not_one_instant() -> None:
    """A load at 4 req/s that kept 70 in flight on average over the window; one gauge reading
    120 (a clump within twice that mean, or requests still finishing on replicas being drained)
    is not a need for a fourth replica. Without the window's mean the same reading adds one."""
    state = ScalerState(recommendations=((540.0, 3),), concurrency_cap=40)
    clump = dataclasses.replace(obs(600.0, 4, 3), running=120.0)
    held = decide(SPEC, PLAN, dataclasses.replace(clump, in_flight_mean=70.0), state, 600.0)
    assert held.replicas == 3
    instant = decide(SPEC, PLAN, clump, state, 600.0)
    assert instant.replicas == 4 and "120 in flight at cap" in instant.reason


def test_a_burst_past_twice_the_ready_slots_scales_on_the_count_now() -> None:
    """250 in flight now against 3 ready x 44 x 0.8 (twice is 211): the window's mean (140)
    would answer after half a window; the count now answers at once, as Knative's panic mode."""
    state = ScalerState(recommendations=((540.0, 3),), concurrency_cap=40)
    burst = dataclasses.replace(obs(600.0, 4, 3), running=250.0, in_flight_mean=140.0)
    d = decide(SPEC, PLAN, burst, state, 600.0)
    assert d.replicas == 8 and "250 in flight now" in d.reason


def test_in_flight_past_twice_its_mean_and_the_ready_slots_implies_the_rate_now() -> None:
    """A step from 4 req/s: the one-minute rate still reads 4, but 160 are in flight against a
    window mean of 24, past twice it, past 24 + 4 sqrt(24) = 43.6 and past the 3 x 44 slots
    of the ready replicas, so the rate now is read as 4 x 160 / 24 = 26.7 req/s: 12 replicas
    at once, where the rate and the count (under twice what 3 ready replicas hold) keep 3.
    The same step within the ready slots (120) is served at once and reads as the rate."""
    state = ScalerState(recommendations=((540.0, 3),), concurrency_cap=40)
    step = dataclasses.replace(obs(600.0, 4, 3), running=160.0, in_flight_mean=24.0)
    d = decide(SPEC, PLAN, step, state, 600.0)
    assert d.replicas == 12 and "implied by 160 in flight now, 24.0 on average" in d.reason
    held = decide(SPEC, PLAN, dataclasses.replace(step, running=120.0), state, 600.0)
    assert held.replicas == 3 and "implied by" not in held.reason
    # no replica ready yet and a mean of 2: the bar is 2 + 4 sqrt(2) = 7.7, not twice the
    # mean, so 7 is noise and 9 a step
    calm = dataclasses.replace(obs(600.0, 0.5, 0, starting=(550.0,)), in_flight_mean=2.0)
    noise = decide(SPEC, PLAN, dataclasses.replace(calm, running=7.0), state, 600.0)
    assert "implied by" not in noise.reason
    surge = decide(SPEC, PLAN, dataclasses.replace(calm, running=9.0), state, 600.0)
    assert "implied by 9 in flight now, 2.0 on average" in surge.reason


def test_a_step_over_the_last_tick_is_read_before_the_window_follows_it() -> None:
    """4 req/s over the window expects 60 arrivals in the last 15 s, give or take 4 x sqrt(60)
    = 31: 16 req/s there (240) is a step, read at once: 16 x 1.5 / 4.95 = 4.8 -> 5 replicas,
    where the window's rate keeps 3. 6 req/s (90) is within the noise, and a lull is never
    read: a fall waits for the window."""
    state = ScalerState(recommendations=((540.0, 3),), concurrency_cap=40)
    base = obs(600.0, 4, 3)
    step = decide(SPEC, PLAN, dataclasses.replace(base, arrival_rate_recent=16.0), state, 600.0)
    assert step.replicas == 5, step.reason
    assert "16.0 req/s (over the last 15 s; 4.0 over the window)" in step.reason
    for recent in (None, 6.0, 0.5):
        calm = dataclasses.replace(base, arrival_rate_recent=recent)
        held = decide(SPEC, PLAN, calm, state, 600.0)
        assert held.replicas == 3 and "over the last" not in held.reason, (recent, held.reason)


def completion(rate: float, ready: int, out_of_reach: float = 0.0) -> Observation:
    """Code completion: 2 539-token prompts, 33-token answers, TTFT within the objective."""
    return dataclasses.replace(
        obs(600.0, rate, ready),
        prompt_tokens=2539,
        output_tokens=33,
        running=rate * 1.0,
        in_flight_mean=rate * 1.0,
        out_of_reach_share=out_of_reach,
    )


def test_long_prompts_with_short_answers_size_for_the_wait_behind_other_prefills() -> None:
    """29 req/s of 2 539-token prompts: the rate need alone keeps prefill at 56% of 10 replicas'
    time; holding the wait behind other prefills to the 1% a p99 objective tolerates needs the
    share at 25%, 22 replicas. Past that tolerance out of reach, the objective is read over the
    requests in reach and the term stays out."""
    p99 = SPEC.model_copy(update={"slo": SPEC.slo.model_copy(update={"percentile": 99.0})})
    state = ScalerState(recommendations=((540.0, 20),), concurrency_cap=40)
    d = decide(p99, PLAN, completion(29.0, 20), state, 600.0)
    assert d.replicas == 22 and "prefill at most 25% of a replica" in d.reason
    out = decide(p99, PLAN, completion(29.0, 20, out_of_reach=0.02), state, 600.0)
    assert out.desired_unbounded < 16 and "prefill at most" not in out.reason
    # p95 tolerates 5%: the share may be 48%, half the replicas
    p95 = decide(SPEC, PLAN, completion(29.0, 20), state, 600.0)
    assert SPEC.slo.percentile == 95 and "prefill at most 48% of a replica" in p95.reason


def test_conversation_traffic_pays_nothing_for_the_prefill_wait() -> None:
    # 1 155-token prompts: slack of 10 prefills allows 60%, above what the rate need runs at
    state = ScalerState(recommendations=((540.0, 5),), concurrency_cap=40)
    d = decide(SPEC, PLAN, obs(600.0, 20.0, 5), state, 600.0)
    assert "prefill at most" not in d.reason

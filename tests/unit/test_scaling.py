"""decide(): time moves numerically, never by sleeping."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.scaling import Decision, Observation, ScalerState, decide

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
    rates: list[float], start: int, spec: InferenceServiceSpec = SPEC, **kw: object
) -> list[Decision]:
    """Drive decide() one tick per rate, replicas becoming ready at once."""
    state, replicas, out = ScalerState(), start, []
    for i, rate in enumerate(rates):
        now = i * TICK
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


def test_drop_to_idle_waits_for_stabilization_then_halves_per_step() -> None:
    ds = run([45.0] * 4 + [0.0] * 40, 4)
    high = ds[3].replicas
    window_ticks = int(SPEC.scaling.scale_down_stabilization_seconds / TICK)
    # Held through the window after the drop.
    assert all(d.replicas == high for d in ds[4 : 4 + window_ticks - 1])
    after = [d.replicas for d in ds[4 + window_ticks - 1 :]]
    assert after[-1] == SPEC.scaling.min_replicas
    for a, b in zip([high, *after], after, strict=False):
        assert b >= a // 2


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


def test_cap_is_seeded_from_the_model_within_bounds() -> None:
    d = decide(SPEC, PLAN, replace(obs(0.0, 10.0, 3), current_cap=None), ScalerState(), 0.0)
    batch = SPEC.scaling.batch
    assert batch.min_concurrency <= d.concurrency_cap <= batch.max_concurrency
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

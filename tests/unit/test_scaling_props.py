"""Properties of decide(): bounds, rate limits and capacity hold for any input."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.burst_reserve import BurstMemory
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.scaling import Observation, ScalerState, decide

BASE = {
    "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "architecture": "llama-3.1-8b"},
    "resources": {"gpu": "h100-80gb"},
}
PLAN = plan(InferenceServiceSpec.model_validate(BASE))
assert isinstance(PLAN, Plan)

maybe = st.none() | st.floats(min_value=0, max_value=1e4, allow_nan=False)


@st.composite
def cases(draw: st.DrawFn) -> tuple[InferenceServiceSpec, Observation, ScalerState, float]:
    lo = draw(st.integers(0, 20))
    hi = draw(st.integers(max(1, lo), 60))
    scaling = {
        "minReplicas": lo,
        "maxReplicas": hi,
        "maxScaleUpRate": draw(st.floats(1.0, 20.0)),
        "maxScaleDownRate": draw(st.floats(1.0, 20.0)),
        "scaleDownStabilizationSeconds": draw(st.integers(0, 600)),
        "mode": draw(st.sampled_from(["auto", "advisory"])),
    }
    spec = InferenceServiceSpec.model_validate({**BASE, "scaling": scaling})
    now = draw(st.floats(0, 1e6))
    ready = draw(st.integers(0, 80))
    o = Observation(
        sampled_at=draw(st.none() | st.just(now) | st.floats(0, 1e6)),
        ttft_s=draw(maybe),
        itl_s=draw(maybe),
        arrival_rate=draw(maybe),
        prompt_tokens=draw(maybe),
        output_tokens=draw(maybe),
        running=draw(maybe),
        waiting=draw(maybe),
        ready_replicas=ready,
        starting_since=tuple(draw(st.lists(st.floats(0, 1e6), max_size=5))),
        current_cap=draw(st.none() | st.integers(1, 512)),
        schedulable_replicas=draw(st.none() | st.integers(0, 100)),
    )
    recs = draw(st.lists(st.tuples(st.floats(0, 1e6), st.integers(0, 100)), max_size=6))
    # Any burst memory a status may carry, a hand-edited one included: the bounds still hold.
    samples = draw(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e4)), max_size=10))
    burst = BurstMemory(
        samples=tuple(samples),
        rise=draw(st.floats(1.0, 1e9)),
        peak=draw(st.floats(0.0, 1e6)),
        updated_at=draw(st.none() | st.floats(0, 1e6)),
    )
    state = ScalerState(
        recommendations=tuple(recs),
        concurrency_cap=draw(st.none() | st.integers(1, 512)),
        burst=burst,
    )
    return spec, o, state, now


@settings(max_examples=300, deadline=None)
@given(cases())
def test_bounds_rate_limits_and_capacity_always_hold(
    case: tuple[InferenceServiceSpec, Observation, ScalerState, float],
) -> None:
    spec, o, state, now = case
    d = decide(spec, PLAN, o, state, now)
    s = spec.scaling
    cur = o.replicas_now()
    assert d.reason
    if o.schedulable_replicas is not None:
        assert d.replicas <= o.schedulable_replicas
    if o.schedulable_replicas is None or o.schedulable_replicas >= s.min_replicas:
        assert s.min_replicas <= d.replicas <= s.max_replicas
    up = max(math.ceil(cur * s.max_scale_up_rate), cur + 4, s.min_replicas)
    down = min(math.floor(cur / s.max_scale_down_rate), s.max_replicas)
    assert d.replicas <= up
    if o.schedulable_replicas is None or o.schedulable_replicas >= down:
        assert d.replicas >= down
    b = s.batch
    assert b.min_concurrency <= d.concurrency_cap <= max(b.min_concurrency, b.max_concurrency)
    assert ScalerState.from_dict(d.state.to_dict()) == d.state

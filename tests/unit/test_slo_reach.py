"""SLOFeasible: the prompt length beyond which no replica count meets the TTFT objective, and the
share of the traffic beyond it, from the same roofline the simulator runs."""

from __future__ import annotations

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.bench.feasible import longest_feasible_prompt
from tokenscale.bench.scenario import Scenario
from tokenscale.domain import autoscale, slo_reach
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.observation import Decision, Observation, ScalerState

# A cumulative prompt-length histogram (rates per le): 90 requests up to 1000 tokens, 6 more up
# to 10 000, 4 more up to 20 000.
BUCKETS = ((1000.0, 90.0), (10000.0, 96.0), (20000.0, 100.0), (float("inf"), 100.0))


def test_the_limit_is_the_benchmarks_feasibility_limit() -> None:
    # One roofline: the operator's limit equals the bench's mask over the simulator's profile.
    sc = Scenario()
    spec, found = sc.spec(), sc.plan
    limit = slo_reach.longest_prompt_within(spec, found)
    assert limit == longest_feasible_prompt(sc.profile, spec.slo.ttft_seconds) == 11973
    model = slo_reach._roofline(spec, found)
    budget = found.max_num_batched_tokens
    assert slo_reach.idle_prefill_s(model, limit, budget) <= 1.0
    assert slo_reach.idle_prefill_s(model, limit + 1, budget) > 1.0


def test_share_above_interpolates_within_the_bucket() -> None:
    assert slo_reach.share_above(BUCKETS, 1000) == pytest.approx(0.10)
    # 12 393 is 23.9% of the way from 10 000 to 20 000: 96 + 0.239 x 4 below it.
    assert slo_reach.share_above(BUCKETS, 12393) == pytest.approx(1 - 96.957 / 100, abs=1e-4)
    assert slo_reach.share_above(BUCKETS, 50000) == pytest.approx(0.0)
    assert slo_reach.share_above((), 10) is None
    assert slo_reach.share_above(((float("inf"), 0.0),), 10) is None


def long_context(ttft: float, percentile: float = 99) -> tuple[InferenceServiceSpec, Plan]:
    sc = Scenario()
    raw = sc.spec().model_dump(by_alias=True, exclude_none=True)
    raw["slo"] = {**raw["slo"], "ttftSeconds": ttft, "percentile": percentile}
    spec = InferenceServiceSpec.model_validate(raw)
    return spec, sc.plan


def test_more_out_of_reach_than_the_percentile_tolerates_is_not_feasible() -> None:
    spec, found = long_context(1.0)
    reach = slo_reach.reach(spec, found, BUCKETS)
    assert reach.longest_prompt == 11973 and not reach.every_prompt
    assert reach.share_out_of_reach == pytest.approx(0.0321, abs=1e-3)
    assert not reach.attainable  # 3% beyond reach at p99, which tolerates 1%
    template, fields = slo_reach.condition(reach, 99)
    message = template.value.message(**fields)
    assert template.value.status == "False" and template.value.reason == "PromptsOutOfReach"
    assert "3.2% of the requests" in message and "over 11973 tokens" in message
    assert "1.00 s or more" in message
    # At p95 the same 3% is within what the objective tolerates.
    spec95, _ = long_context(1.0, percentile=95)
    assert slo_reach.reach(spec95, found, BUCKETS).attainable


def test_an_objective_every_prompt_meets_is_feasible_whatever_the_traffic() -> None:
    spec, found = long_context(3.0)
    reach = slo_reach.reach(spec, found, BUCKETS)
    assert reach.every_prompt and reach.attainable
    template, _ = slo_reach.condition(reach, 99)
    assert template.value.reason == "EveryPrompt"


def test_the_tick_writes_slofeasible_only_with_metrics() -> None:
    spec, found = long_context(1.0)
    decision = Decision(
        replicas=2,
        concurrency_cap=8,
        reason="hold",
        mode="auto",
        applied=True,
        previous_replicas=2,
        state=ScalerState(),
    )
    obs = Observation(current_replicas=2, ready_replicas=2, current_cap=8)
    reach = slo_reach.reach(spec, found, BUCKETS)
    patch = autoscale.tick_status(spec, {}, decision, obs, 0.0, 1, None, reach)
    cond = next(c for c in patch["conditions"] if c["type"] == "SLOFeasible")
    assert cond["status"] == "False"
    without = autoscale.tick_status(spec, {}, decision, obs, 0.0, 1, None, None)
    assert not [c for c in without["conditions"] if c["type"] == "SLOFeasible"]


def test_a_small_model_with_default_objectives_meets_every_prompt() -> None:
    spec = InferenceServiceSpec.model_validate(minimal_spec())
    found = plan(spec)
    assert isinstance(found, Plan)
    assert slo_reach.reach(spec, found, ()).every_prompt

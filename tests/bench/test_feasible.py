"""Feasible requests: the closed forms against the engine model, and the mask over a trace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tokenscale.bench.feasible import (
    feasible,
    idle_mean_itl,
    idle_ttft,
    longest_feasible_prompt,
)
from tokenscale.bench.policies import Static
from tokenscale.bench.runner import simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace
from tokenscale_sim.engine import EngineModel
from tokenscale_sim.profile import EngineProfile

STANDARD = Scenario().profile


def _lone(profile: EngineProfile, prompt: int, output: int) -> tuple[float, float]:
    """(TTFT, mean ITL) of one request on an empty engine, step by step."""
    engine = EngineModel(profile)
    engine.add_request(0, prompt, output, 0.0)
    done = []
    while (res := engine.step(engine.clock)) is not None:
        done += res.finished
    (f,) = done
    return f.first_token_at, f.mean_itl


# Attention per (query, context) pair made 2000x dearer: a lone decode turns compute-bound past a
# context of a few thousand tokens, so the mean ITL crosses from the memory line to the compute
# line inside one request.
CROSSING = replace(STANDARD, attn_s_per_pair=STANDARD.attn_s_per_pair * 2000)


@pytest.mark.parametrize("profile", [STANDARD, CROSSING], ids=["memory-bound", "crossing"])
@pytest.mark.parametrize(("prompt", "output"), [(1, 2), (700, 40), (2048, 3), (9000, 900)])
def test_closed_forms_equal_the_engine_model(
    profile: EngineProfile, prompt: int, output: int
) -> None:
    ttft, itl = _lone(profile, prompt, output)
    assert idle_ttft(profile, prompt) == pytest.approx(ttft, rel=1e-9)
    assert idle_mean_itl(profile, prompt, output) == pytest.approx(itl, rel=1e-9)


def test_the_crossing_profile_does_cross() -> None:
    """The second profile really exercises both lines (else its cases prove nothing new)."""
    p = CROSSING
    short, long = 100, 12000
    mem = [p.weight_s + p.kv_read_s_per_token * x for x in (short, long)]
    cmp = [p.flop_s_per_token + p.attn_s_per_pair * x for x in (short, long)]
    assert mem[0] > cmp[0] and mem[1] < cmp[1]


def test_longest_feasible_prompt_is_the_edge() -> None:
    sc = Scenario()
    edge = longest_feasible_prompt(sc.profile, sc.ttft_s)
    assert 0 < edge < sc.profile.max_model_len - 1
    assert idle_ttft(sc.profile, edge) <= sc.ttft_s < idle_ttft(sc.profile, edge + 1)
    assert longest_feasible_prompt(sc.profile, 1e-6) == 0


def test_mask_marks_only_what_an_idle_replica_cannot_serve() -> None:
    sc = Scenario()
    edge = longest_feasible_prompt(sc.profile, sc.ttft_s)
    trace = Trace(
        "t",
        np.array([0.0, 1.0, 2.0, 3.0]),
        np.array([10, edge, edge + 1, 10], dtype=np.int64),
        np.array([10, 10, 10, 10], dtype=np.int64),
    )
    assert feasible(trace, sc.profile, sc.ttft_s, sc.itl_s).tolist() == [True, True, False, True]
    # An ITL objective below a lone decode step: nothing with two tokens or more is feasible.
    step = idle_mean_itl(sc.profile, 10, 10)
    assert not feasible(trace, sc.profile, sc.ttft_s, step * 0.99).any()


def test_a_run_reports_attainment_over_the_feasible_requests() -> None:
    """Every fourth request has a prompt just past the edge: no replica serves it in time (each
    one is a miss in the run), the run says a quarter is infeasible, and its attainment over the
    rest is the share of those met."""
    sc = Scenario()
    edge = longest_feasible_prompt(sc.profile, sc.ttft_s)
    n = 200
    prompts = np.where(np.arange(n) % 4 == 0, edge + 50, 300).astype(np.int64)
    trace = Trace("mix", np.linspace(0.0, 300.0, n), prompts, np.full(n, 50, dtype=np.int64))
    r = simulate(trace, sc, Static(2), 2)
    assert r.infeasible_share == pytest.approx(0.25)
    # attainment = 3/4 x feasible attainment + (infeasible met) / n: equal only if none was met
    assert r.slo_attainment == pytest.approx(0.75 * r.feasible_attainment, abs=1e-12)
    assert r.feasible_attainment > 0.9


def test_a_token_budget_reaches_the_plan_the_engine_and_the_feasibility_mask() -> None:
    # evaluate --max-num-batched-tokens: every policy and the bound run the same smaller budget.
    small = Scenario(max_num_batched_tokens=608)
    assert small.plan.max_num_batched_tokens == 608
    assert small.profile.max_num_batched_tokens == 608
    vllms = Scenario(max_num_batched_tokens=8192)
    assert vllms.profile.max_num_batched_tokens == 8192
    # A 12k-token prompt takes 21 chunks instead of 2: the objective reaches fewer prompts.
    assert longest_feasible_prompt(small.profile, 1.0) < longest_feasible_prompt(vllms.profile, 1.0)
    # Unset, the plan's budget (the ITL objective's, 531 tokens) reaches all of them too.
    assert Scenario().plan.max_num_batched_tokens == Scenario().profile.max_num_batched_tokens

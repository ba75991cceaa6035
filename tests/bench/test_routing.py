"""The balancer's two rules: Envoy's least-request (the default) and least pending prefill, the
rule a prefill-aware gateway would apply (docs/disaggregation.md)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tokenscale.bench.bound import MINUTE_S, served
from tokenscale.bench.fleet import Fleet
from tokenscale.bench.metrics import Recorder
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.sets import validation
from tokenscale.bench.traces import Trace
from tokenscale_sim.engine import EngineModel


def test_the_engine_counts_the_prompt_tokens_it_has_still_to_prefill() -> None:
    profile = Scenario().profile
    engine = EngineModel(profile)
    engine.add_request("long", 5000, 8, 0.0)
    engine.add_request("short", 100, 8, 0.0, cached_tokens=64)  # 64 cached: never prefilled
    assert engine.pending_prefill_tokens == 5000 + 100 - 64
    engine.step(0.0)  # one chunk of at most the step's token budget
    budget = profile.max_num_batched_tokens
    assert engine.pending_prefill_tokens == max(0, 5000 + 36 - budget)
    while engine.has_work:
        engine.step(engine.clock)
    assert engine.pending_prefill_tokens == 0


def three_requests() -> Trace:
    """Two short decodes, one long prompt, then a second long prompt."""
    return Trace(
        "routing",
        arrival=np.array([0.0, 0.0, 0.0, 0.01]),
        prompt=np.array([64, 64, 6000, 6000]),
        output=np.array([200, 200, 8, 8]),
    )


def placed_second_prompt(routing: str) -> int:
    """Where the second long prompt goes when one replica decodes two short requests and the
    other is prefilling the first long prompt."""
    trace, sc = three_requests(), Scenario()
    fleet = Fleet(sc.profile, trace, Recorder(trace, sc.tick_s), 0.0, 2, 1, routing=routing)
    fleet.start(2, 0.0, warm=True)
    fleet.arrive(0, 0.0)  # routed by the rule under test; move each to a known replica
    fleet.arrive(1, 0.0)
    fleet.arrive(2, 0.0)
    decoding, prefilling = fleet.alive
    for rid in (0, 1, 2):
        fleet._owner[rid].drop(rid)
    decoding.offer(0, 0.0)
    decoding.offer(1, 0.0)
    prefilling.offer(2, 0.0)
    fleet.arrive(3, 0.01)
    return fleet.alive.index(fleet._owner[3])


def test_least_prefill_sends_a_long_prompt_away_from_another_prefill() -> None:
    assert placed_second_prompt("least-prefill") == 0  # the decoding replica: no prefill ahead
    assert placed_second_prompt("least-request") == 1  # the one with fewer requests in flight


def test_least_prefill_serves_more_of_a_prefill_heavy_minute_on_the_same_fleet() -> None:
    work = next(w for w in validation(seeds=1) if w.name == "prefill-heavy")
    sc = work.scenario(Scenario(), 1)
    trace = work.trace(sc, 1)
    start = 28 * MINUTE_S  # a busy minute (docs/benchmarks.md, "The lower bound")
    keep = (trace.arrival >= start) & (trace.arrival < start + MINUTE_S)
    minute = Trace(
        "minute 28",
        trace.arrival[keep] - start,
        trace.prompt[keep],
        trace.output[keep],
    )
    by_count = served(sc, minute, 14, 1)
    by_prefill = served(replace(sc, routing="least-prefill"), minute, 14, 1)
    assert by_prefill > by_count, (by_prefill, by_count, len(minute))

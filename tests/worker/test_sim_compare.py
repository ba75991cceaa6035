"""The pure half of the simulator-vs-vLLM comparison: the step-cost fit and the virtual replay."""

from __future__ import annotations

import itertools

import pytest

from tokenscale_sim import EngineProfile
from tokenscale_sim.compare import (
    StepCosts,
    bursty_trace,
    fit_step_costs,
    frontend_arrivals,
    measured_profile,
    percentile,
    simulate,
)

COSTS = StepCosts(fixed_s=0.012, per_seq_s=0.0015, per_token_s=0.00004)


def step(c: StepCosts, seqs: int, tokens: int) -> float:
    return c.fixed_s + c.per_seq_s * seqs + c.per_token_s * tokens


def test_fit_recovers_the_coefficients_of_exact_measurements() -> None:
    decode = [(n, step(COSTS, n, n)) for n in (1, 2, 4, 8)]
    frontend = 0.005
    prefill = [(p, frontend + step(COSTS, 1, p)) for p in (32, 128, 384)]
    got = fit_step_costs(decode, prefill)
    assert got.frontend_s == pytest.approx(frontend)
    assert got.fixed_s == pytest.approx(COSTS.fixed_s)
    assert got.per_seq_s == pytest.approx(COSTS.per_seq_s)
    assert got.per_token_s == pytest.approx(COSTS.per_token_s)


def test_fit_needs_two_batch_sizes() -> None:
    with pytest.raises(ValueError, match="two distinct x values"):
        fit_step_costs([(1, 0.01), (1, 0.02)], [(32, 0.01), (64, 0.02)])


def profile(max_num_seqs: int = 8) -> EngineProfile:
    return measured_profile(
        COSTS,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=2048,
        max_model_len=512,
        kv_capacity_tokens=1 << 20,
    )


def test_replay_serves_every_request_within_the_sequence_cap() -> None:
    trace = bursty_trace()
    res = simulate(profile(), trace)
    assert sorted(res.ttft) == sorted(r.req_id for r in trace)
    assert len(res.itl) == sum(r.output_tokens - 1 for r in trace)
    assert max(n for _, n in res.running) <= 8
    # A lone decode step is the shortest interval there can be.
    assert min(res.itl) >= step(COSTS, 1, 1) - 1e-12
    assert res.preemptions == 0  # 1 M KV tokens hold every request of the trace


def test_bursts_larger_than_the_cap_wait_and_clear() -> None:
    """14 requests arrive within 50 ms; 8 sequences run, so at the first sample 6 wait (the
    first batch of decodes takes longer than 0.1 s: at least 16 steps of >= 13.5 ms)."""
    res = simulate(profile(), bursty_trace())
    assert res.waiting[0] == (0.1, 6)
    assert res.waiting[-1][1] == 0
    wider = simulate(profile(max_num_seqs=64), bursty_trace())
    assert max(n for _, n in wider.waiting) == 0
    assert percentile(list(wider.ttft.values()), 99) < percentile(list(res.ttft.values()), 99)


def test_a_serial_front_end_spreads_a_burst() -> None:
    """14 requests within 50 ms through a 20 ms front end reach the scheduler one by one, 20 ms
    apart at least; the first is alone in its prefill step either way, so its TTFT grows by
    exactly the front end's 20 ms."""
    trace = bursty_trace(bursts=((0.0, 14),))
    reached = frontend_arrivals(trace, 0.02)
    gaps = [b.arrival - a.arrival for a, b in itertools.pairwise(reached)]
    assert min(gaps) >= 0.02 - 1e-12
    assert all(r.arrival >= t.arrival + 0.02 - 1e-12 for r, t in zip(reached, trace, strict=True))
    direct = simulate(profile(), trace)
    fronted = simulate(profile(), trace, frontend_s=0.02)
    first = trace[0].req_id
    assert fronted.ttft[first] == pytest.approx(direct.ttft[first] + 0.02)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 99) == 4.0

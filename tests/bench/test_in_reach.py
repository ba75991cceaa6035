"""The simulated operator reads TTFT over the requests in reach, as the operator does: the same
limit (the plan's roofline) and the share of the window's prompts beyond it, exact or from
vLLM's prompt-length buckets."""

from __future__ import annotations

import numpy as np
import pytest

from tokenscale.bench.metrics import Recorder, observe
from tokenscale.bench.policies import Tokenscale
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace
from tokenscale.domain import slo_reach

# 100 requests, one a second: every tenth prompt 16 000 tokens (out of reach of 1 s), the rest 500.
PROMPTS = np.where(np.arange(100) % 10 == 0, 16000, 500).astype(np.int64)
TRACE = Trace(
    "in-reach",
    np.arange(1, 101, dtype=np.float64),
    PROMPTS,
    np.full(100, 100, dtype=np.int64),
)


def test_the_policy_knows_the_operators_limit() -> None:
    flat = Tokenscale(Scenario())
    assert flat.reach_limit == slo_reach.longest_prompt_within(flat.spec, flat.plan) == 11973
    # An allowance that covers every prompt up to maxModelLen: nothing is out of reach.
    assert Tokenscale(Scenario(ttft_per_1k_s=0.1)).reach_limit is None


def test_the_share_out_of_reach_is_read_as_the_operator_reads_it() -> None:
    sc = Scenario()
    exact = Recorder(TRACE, sc.tick_s)
    assert exact.prompt_share_above(0.0, 100.0, 12393) == pytest.approx(0.1)
    assert exact.prompt_share_above(200.0, 300.0, 12393) is None  # no arrivals
    buckets = Recorder(TRACE, sc.tick_s, signals="prometheus", buckets=sc.histogram_buckets)
    share = buckets.prompt_share_above(0.0, 100.0, 12393)
    # vLLM's 1-2-5 buckets for this trace stop at 10 000: a prompt past the last bound reads
    # as beyond the limit, as share_above reads the operator's +Inf bucket.
    assert share == pytest.approx(0.1)
    # Within a bucket, linearly (as histogram_quantile): the 500-token prompts sit in
    # (200, 500], two thirds of which lie under 400.
    assert buckets.prompt_share_above(0.0, 100.0, 3000) == pytest.approx(0.1)
    assert buckets.prompt_share_above(0.0, 100.0, 400) == pytest.approx(1 - 0.9 * 2 / 3)


def test_observe_reads_ttft_over_the_requests_in_reach() -> None:
    """First tokens at 0.2 s for short prompts and 5 s for long ones: p95 of all is a long
    prompt's; over the 90% in reach it is 0.2 s."""
    sc = Scenario()
    rec = Recorder(TRACE, sc.tick_s, window_s=120.0)
    for rid, prompt in enumerate(PROMPTS):
        rec.ttft[rid] = 5.0 if prompt > 12393 else 0.2
        rec._open.ttft.append(float(rec.ttft[rid]))
    rec.close_bucket((0.0, 0.0, 0.0))
    every = observe(rec, 100.0, 95, (0.0, 0.0, 0.0), 1, (), 1, 8)
    in_reach = observe(rec, 100.0, 95, (0.0, 0.0, 0.0), 1, (), 1, 8, reach_limit=12393)
    assert every.ttft_s == 5.0 and every.out_of_reach_share == 0.0
    assert in_reach.ttft_s == 0.2 and in_reach.out_of_reach_share == pytest.approx(0.1)

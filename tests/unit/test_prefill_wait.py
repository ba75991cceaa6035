"""The wait behind other prefills: the prefill share its M/M/1 tail allows, and the need."""

from __future__ import annotations

import math

import pytest

from tokenscale.domain.prefill_wait import prefill_share_within, prefill_wait_need


@pytest.mark.parametrize(
    ("slack", "share"),
    [(4.34, 0.254), (10.29, 0.602), (2.37, 0.087)],  # code completion, conversation, long prompts
)
def test_the_share_holds_the_tail_at_the_tolerance(slack: float, share: float) -> None:
    rho = prefill_share_within(slack, 0.01)
    assert rho == pytest.approx(share, abs=0.001)
    assert rho * math.exp(-(1 - rho) * slack) == pytest.approx(0.01, rel=1e-6)


def test_more_slack_or_more_tolerance_allows_more_prefill() -> None:
    shares = [prefill_share_within(k, 0.01) for k in (1.0, 2.0, 4.0, 8.0, 16.0)]
    assert shares == sorted(shares) and len(set(shares)) == len(shares)
    assert prefill_share_within(4.0, 0.05) > prefill_share_within(4.0, 0.01)
    assert prefill_share_within(4.0, 0.0) == 0.0 and prefill_share_within(4.0, 1.0) == 1.0


def test_the_need_of_code_completion_traffic() -> None:
    # 29 req/s of 0.187 s prefills under a 1 s p99 objective: slack 4.35 prefills, rho 0.255
    # -> 21.3 replicas
    need = prefill_wait_need(29.0, 0.187, 1.0, 99.0, 1, 3.0)
    assert need is not None
    replicas, rho = need
    assert rho == pytest.approx(0.255, abs=0.001)
    assert replicas == pytest.approx(21.3, abs=0.1)
    assert replicas == pytest.approx(29.0 * 0.187 / rho)
    # a pipeline replica prefills one prompt per stage at once
    two = prefill_wait_need(29.0, 0.187, 1.0, 99.0, 2, 3.0)
    assert two is not None and two[0] == pytest.approx(replicas / 2)


def test_too_little_slack_or_no_traffic_stays_out() -> None:
    assert prefill_wait_need(10.0, 0.297, 1.0, 99.0, 1, 3.0) is None  # slack 2.4 prefills
    assert prefill_wait_need(10.0, 1.2, 1.0, 99.0, 1, 3.0) is None  # prefill past the objective
    assert prefill_wait_need(0.0, 0.187, 1.0, 99.0, 1, 3.0) is None
    assert prefill_wait_need(10.0, 0.0, 1.0, 99.0, 1, 3.0) is None

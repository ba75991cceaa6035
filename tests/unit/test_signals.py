"""Histogram quantiles, PromQL construction and escaping, and the reduction to an Observation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tokenscale.adapters.prometheus import (
    GAUGES,
    HISTOGRAMS,
    RATES,
    RECENT_RATES,
    _group_buckets,
    build_queries,
    escape_label_value,
    namespace_matcher,
    prometheus_duration,
)
from tokenscale.domain.histogram import quantile
from tokenscale.domain.signals import ServiceSignals, WorkloadFacts, to_observation

INF = math.inf


def test_quantile_matches_the_worked_number() -> None:
    buckets = [(0.5, 90.0), (1.0, 98.0), (INF, 100.0)]
    assert quantile(0.95, buckets) == pytest.approx(0.8125)


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.0, 0.0), (0.25, 0.25), (0.5, 0.5), (0.75, 0.75), (1.0, 1.0)],
)
def test_quantile_interpolates_from_zero(q: float, expected: float) -> None:
    assert quantile(q, [(0.5, 50.0), (1.0, 100.0), (INF, 100.0)]) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_answers_the_last_finite_bound() -> None:
    assert quantile(0.99, [(0.5, 10.0), (1.0, 20.0), (INF, 100.0)]) == 1.0


@pytest.mark.parametrize("buckets", [[], [(0.5, 0.0), (INF, 0.0)], [(0.5, 3.0)]])
def test_quantile_without_observations_is_none(buckets: list[tuple[float, float]]) -> None:
    assert quantile(0.95, buckets) is None


def test_queries_are_a_fixed_small_set() -> None:
    plan = build_queries("1m")
    assert set(plan.queries) == {"ttft", "itl", "e2e", "rates", "gauges"}
    assert "tokenscale_gateway_queue_wait_seconds_bucket" in plan.queries["ttft"]
    assert '"part", "engine"' in plan.queries["ttft"] and '"part", "queue"' in plan.queries["ttft"]
    assert all("tokenscale_io_service" in q for q in plan.queries.values())
    for key in RATES:
        assert f'"signal", "{key}"' in plan.queries["rates"]
    for key, metric in RECENT_RATES.items():  # the last tick's demand, beside the window's
        assert f'rate({metric}[15000ms])), "signal", "{key}"' in plan.queries["rates"]
    for key in GAUGES:
        assert f'"signal", "{key}"' in plan.queries["gauges"]
    # The per-request histogram first: for series with the same labels PromQL's `or` keeps the
    # left side, so per-token intervals are read only from a vLLM that lacks it.
    itl = plan.queries["itl"]
    order = [
        itl.index(f"rate(vllm:{name}_bucket")
        for name in (
            "request_time_per_output_token_seconds",
            "inter_token_latency_seconds",
            "time_per_output_token_seconds",
        )
    ]
    assert order == sorted(order), itl
    assert len(HISTOGRAMS) == 3


@pytest.mark.parametrize("window", ["1 m", "1m] or vector(1", "", "5d"])
def test_bad_window_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match="window"):
        build_queries(window)


@pytest.mark.parametrize(
    "hostile",
    ['team"} or vector(1) or {x="', "a\\", 'ns{le=~".*"}', 'q"\n'],
)
def test_namespace_values_cannot_change_a_query(hostile: str) -> None:
    matcher = namespace_matcher([hostile])
    # The matcher is exactly one label matcher: one opening quote, one closing quote, and every
    # quote inside is escaped.
    inner = matcher.removeprefix('{namespace=~"').removesuffix('"}')
    unescaped = [i for i, ch in enumerate(inner) if ch == '"' and (i == 0 or inner[i - 1] != "\\")]
    assert unescaped == []
    assert "\n" not in matcher


@pytest.mark.parametrize(
    ("seconds", "expected"), [(5.0, "5000ms"), (5, "5000ms"), (2.5, "2500ms"), (0.0001, "1ms")]
)
def test_query_timeout_is_a_duration_prometheus_parses(seconds: float, expected: str) -> None:
    # The settings hold a float: "5.0s" made Prometheus refuse every query with HTTP 400.
    assert prometheus_duration(seconds) == expected


def test_escape_label_value() -> None:
    assert escape_label_value('a"b\\c') == 'a\\"b\\\\c'


def test_observation_takes_each_services_own_percentile() -> None:
    signals = ServiceSignals(
        sampled_at=100.0,
        ttft_buckets=((0.5, 90.0), (1.0, 98.0), (INF, 100.0)),
        itl_buckets=((0.05, 100.0), (INF, 100.0)),
        rates={
            "requests": 3.0,
            "arrivals": 3.5,
            "rejected": 0.5,
            "arrivals_recent": 9.0,
            "rejected_recent": 1.0,
            "prompt_tokens": 1200.0,
            "generation_tokens": 600.0,
        },
        gauges={"running": 40.0, "waiting": 5.0, "gateway_queue": 7.0, "kv_cache_usage": 0.4},
    )
    facts = WorkloadFacts(ready_replicas=2, current_replicas=3, starting_since=(10.0,))
    p95 = to_observation(signals, 95, facts)
    p99 = to_observation(signals, 99, facts)
    assert p95.ttft_s == pytest.approx(0.8125)
    assert p99.ttft_s is not None and p99.ttft_s > p95.ttft_s
    assert p95.arrival_rate == pytest.approx(4.0)  # admitted + rejected
    assert p95.arrival_rate_recent == pytest.approx(10.0)  # the same over the last tick
    assert p95.prompt_tokens == pytest.approx(400.0)
    assert p95.output_tokens == pytest.approx(200.0)
    assert p95.waiting == pytest.approx(12.0)  # engine queue + gateway queue
    assert p95.sampled_at == 100.0 and p95.current_replicas == 3


def test_ttft_includes_the_gateway_queue_wait() -> None:
    # Engine TTFT p95 0.25 s, but clients waited behind the cap: p95 queue wait 1.75 s.
    engine = ((0.1, 50.0), (0.25, 96.0), (0.5, 100.0), (INF, 100.0))
    queue = ((0.01, 40.0), (1.0, 80.0), (2.0, 100.0), (INF, 100.0))
    signals = ServiceSignals(ttft_buckets=engine, queue_wait_buckets=queue)
    obs = to_observation(signals, 95, WorkloadFacts(1, 1))
    assert quantile(0.95, engine) == pytest.approx(0.2467, abs=1e-3)
    assert quantile(0.95, queue) == pytest.approx(1.75)
    assert obs.ttft_s == pytest.approx(0.2467 + 1.75, abs=1e-3)
    no_queue = to_observation(ServiceSignals(ttft_buckets=engine), 95, WorkloadFacts(1, 1))
    assert no_queue.ttft_s == pytest.approx(0.2467, abs=1e-3)


def test_grouping_splits_the_ttft_answer_into_engine_and_queue() -> None:
    def sample(part: str, le: str, value: float) -> dict[str, Any]:
        labels = {"namespace": "ns", "tokenscale_io_service": "chat", "le": le, "part": part}
        return {"metric": labels, "value": [0, str(value)]}

    answer = [sample("engine", "0.5", 9.0), sample("engine", "+Inf", 10.0)]
    answer += [sample("queue", "1", 4.0), sample("queue", "+Inf", 10.0)]
    engine = _group_buckets(answer, "engine")[("ns", "chat")]
    queue = _group_buckets(answer, "queue")[("ns", "chat")]
    assert engine == ((0.5, 9.0), (INF, 10.0))
    assert queue == ((1.0, 4.0), (INF, 10.0))


def test_token_means_come_from_finished_requests() -> None:
    # 30 s window: 8 long requests admitted, 2 finished. The counters saw every prompt's
    # prefill (16000 tokens) but only 2 completions; the histograms saw 2 requests of 2000.
    rates = {
        "requests": 2 / 30,
        "prompt_tokens": 16000 / 30,
        "prompt_tokens_sum": 4000 / 30,
        "prompt_tokens_count": 2 / 30,
        "generation_tokens": 1200 / 30,
        "generation_tokens_sum": 512 / 30,
        "generation_tokens_count": 2 / 30,
    }
    obs = to_observation(ServiceSignals(rates=rates), 95, WorkloadFacts(1, 1))
    assert obs.prompt_tokens == pytest.approx(2000.0)
    assert obs.output_tokens == pytest.approx(256.0)
    counters_only = {k: v for k, v in rates.items() if not k.endswith(("_sum", "_count"))}
    old = to_observation(ServiceSignals(rates=counters_only), 95, WorkloadFacts(1, 1))
    assert old.prompt_tokens == pytest.approx(8000.0)  # the fallback, biased high


def test_no_series_means_no_sample() -> None:
    obs = to_observation(ServiceSignals(), 95, WorkloadFacts(1, 1))
    assert obs.sampled_at is None and obs.ttft_s is None

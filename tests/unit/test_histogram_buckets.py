"""Latency buckets around the objective: what the worker passes vLLM, and vLLM's rules for them."""

from __future__ import annotations

import itertools

import pytest

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.histogram import quantile
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.worker_config import worker_config
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.histogram_buckets import (
    INTER_TOKEN_LATENCY_BUCKETS,
    ITL_FAMILY,
    TTFT_FAMILY,
    check_buckets,
    slo_buckets,
)


@pytest.mark.parametrize(("ttft", "itl"), [(1.0, 0.05), (0.3, 0.02), (2.5, 0.1), (7.0, 0.033)])
def test_the_objective_is_a_bound_with_fine_steps_around_it(ttft: float, itl: float) -> None:
    buckets = slo_buckets(ttft, itl)
    for family, objective in ((TTFT_FAMILY, ttft), (ITL_FAMILY, itl)):
        bounds = buckets[family]
        assert objective in bounds
        check_buckets({family: bounds})  # vLLM's rules: positive, finite, strictly increasing
        near = [b for b in bounds if 0.5 * objective <= b <= 2.0 * objective]
        steps = [hi / lo for lo, hi in itertools.pairwise(near)]
        # every step between half and twice the objective is at most 25% wide, within
        # +/-10% of it at most 5.6% (0.95 / 0.9)
        assert max(steps) <= 1.25 + 1e-9, (family, near)
        close = [b for b in near if 0.9 * objective <= b <= 1.1 * objective]
        assert max(hi / lo for lo, hi in itertools.pairwise(close)) <= 1.056, (family, close)


def test_a_p99_reads_close_to_the_truth_where_the_defaults_read_far() -> None:
    """99 requests at 35 ms and one at 60 ms over 50 ms: p99 has rank 99, the last of the
    35 ms ones. In vLLM's (25, 50] bucket it interpolates to 50 ms, the objective itself; with
    the objective's buckets it is the (30, 35] bucket's top: 35 ms, the truth."""
    values = [0.035] * 99 + [0.06]

    def read(bounds: list[float]) -> float | None:
        counts = [(b, float(sum(v <= b for v in values))) for b in bounds]
        return quantile(0.99, [*counts, (float("inf"), float(len(values)))])

    assert read(list(INTER_TOKEN_LATENCY_BUCKETS)) == pytest.approx(0.05)
    assert read(slo_buckets(1.0, 0.05)[ITL_FAMILY]) == pytest.approx(0.035)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"latency": [0.1]}, "unknown family 'latency'"),
        ({ITL_FAMILY: []}, "must not be empty"),
        ({ITL_FAMILY: [0.1, 0.05]}, "strictly increasing"),
        ({ITL_FAMILY: [0.0, 0.05]}, "bound 0.0 must be a finite number > 0"),
        ({ITL_FAMILY: [0.05, float("inf")]}, "bound inf must be"),
    ],
)
def test_bad_buckets_are_refused_naming_the_family(
    value: dict[str, list[float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_buckets(value)
    with pytest.raises(ValueError, match=message):
        WorkerConfig.model_validate({"modelSource": "hf://a/b", "servedName": "x",
                                     "histogramBuckets": value})  # fmt: skip


def test_the_rendered_worker_config_carries_the_specs_objectives() -> None:
    spec = InferenceServiceSpec.model_validate(
        {
            "model": {
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "architecture": "llama-3.1-8b",
            },
            "resources": {"gpu": "h100-80gb"},
            "slo": {"ttftSeconds": 0.8, "itlSeconds": 0.04},
        }
    )
    p = plan(spec)
    assert isinstance(p, Plan)
    config = worker_config(spec, p, ServiceRef("team-a", "chat"))
    assert config["histogramBuckets"] == slo_buckets(0.8, 0.04)
    assert 0.04 in config["histogramBuckets"][ITL_FAMILY]


def test_the_simulator_exports_the_buckets_it_is_given_as_vllm_does() -> None:
    """Every ITL-family histogram (per token, its former name, per request) and TTFT take the
    given bounds; the others keep vLLM's defaults."""
    from prometheus_client import generate_latest

    from tokenscale_sim.metrics import SimMetrics

    text = generate_latest(SimMetrics("m", 4096, None, slo_buckets(1.0, 0.05)).registry).decode()
    for name in (
        "vllm:inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds",
        "vllm:request_time_per_output_token_seconds",
    ):
        assert f'{name}_bucket{{engine="0",le="0.0375",model_name="m"}}' in text, name
    assert 'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.95",model_name="m"}' in text
    assert 'vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.95"' not in text
    plain = generate_latest(SimMetrics("m", 4096).registry).decode()
    assert 'le="0.0375"' not in plain

"""vLLM's Prometheus metrics as the simulator exports them: same names, types, labels, buckets.

Names, documentation strings and buckets follow vLLM 0.32's `vllm/v1/metrics/loggers.py` and
`vllm/v1/metrics/buckets.py`; labels are `model_name` and `engine` ("0"), plus any constant labels
given with --label or TOKENSCALE_METRIC_LABELS (the fleet emulator adds namespace/pod/service, which
Prometheus adds from pod labels in a cluster).

One addition: `vllm:time_per_output_token_seconds`, the per-token histogram's name before vLLM
0.11 renamed it `vllm:inter_token_latency_seconds`; both are observed with the same values so
dashboards and queries written for either version work against the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tokenscale_contract.histogram_buckets import (
    INTER_TOKEN_LATENCY_BUCKETS,
    ITL_FAMILY,
    TIME_TO_FIRST_TOKEN_BUCKETS,
    TTFT_FAMILY,
)

REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


def build_1_2_5_buckets(max_value: int) -> list[float]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to max_value (8192 -> ... 5000)."""
    out: list[float] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return out
            out.append(float(m * scale))
        scale *= 10


class SimMetrics:
    """The metric objects, already bound to this engine's label values."""

    def __init__(
        self,
        model_name: str,
        max_model_len: int,
        extra_labels: Mapping[str, str] | None = None,
        buckets: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """`buckets`: bounds per vLLM bucket family replacing the defaults, as vLLM's
        `--custom-histogram-buckets` does (the TTFT and ITL families are modelled)."""
        custom = dict(buckets or {})
        ttft_bounds = tuple(custom.get(TTFT_FAMILY, TIME_TO_FIRST_TOKEN_BUCKETS))
        itl_bounds = tuple(custom.get(ITL_FAMILY, INTER_TOKEN_LATENCY_BUCKETS))
        extra = dict(extra_labels or {})
        names = ["model_name", "engine", *extra]
        values = [model_name, "0", *extra.values()]
        self.registry = r = CollectorRegistry(auto_describe=True)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=r).labels(*values)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, names, registry=r).labels(*values)

        def hist(name: str, doc: str, buckets: tuple[float, ...] | list[float]) -> Histogram:
            return Histogram(name, doc, names, buckets=buckets, registry=r).labels(*values)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*names, "finished_reason"],
            registry=r,
        )
        self.success = {reason: success.labels(*values, reason) for reason in FINISH_REASONS}
        tokens = build_1_2_5_buckets(max_model_len)
        self.request_prompt_tokens = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens
        )
        self.request_generation_tokens = hist(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tokens
        )
        self.ttft = hist(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            ttft_bounds,
        )
        self.itl = hist(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            itl_bounds,
        )
        self.tpot_legacy = hist(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            itl_bounds,
        )
        self.request_tpot = hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            itl_bounds,
        )
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.queue_time = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )


def parse_labels(items: list[str] | None, env_value: str | None) -> dict[str, str]:
    """Constant labels from `--label k=v` items and/or 'k=v,k=v' in the environment."""
    pairs = [p for p in (env_value or "").split(",") if p.strip()] + list(items or [])
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier() or key in ("model_name", "engine", "finished_reason"):
            raise ValueError(
                f"metric label {pair!r} must look like name=value with a new label name "
                "(letters, digits, underscores)"
            )
        labels[key] = value.strip()
    return labels

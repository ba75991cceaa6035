"""Every PromQL string tokenscale sends, and the fetch of one tick's signals for ALL services.

A tick costs a fixed number of queries however many services exist: three histogram queries
(TTFT, ITL, E2E buckets, grouped by namespace, service and `le`), one query for every rate and one
for every gauge (each series tagged with `label_replace` so one answer carries many signals).
The TTFT query also carries the gateway's queue-wait buckets (tagged `part="queue"`): the engine
starts its TTFT clock when the gateway admits a request, so time spent queued behind the
concurrency cap is only in the gateway's histogram. The E2E query likewise carries the requests'
prompt-length buckets (`part="prompt"`), for the share of prompts out of the TTFT objective's reach.
The gauge query also carries each service's sample time: the scrape time of its oldest engine
gauge, `timestamp()` of the series, which `decide()` holds on when it is older than a window.
Quantiles are taken locally at each service's own SLO percentile (domain/histogram.py).

No value from a user object is ever spliced into a query except through `escape_label_value`
(the optional namespace filter), so a name holding quotes, braces or backslashes cannot change it.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from tokenscale.adapters.prometheus_errors import classify, display_url
from tokenscale.domain.render import SCRAPE_INTERVAL
from tokenscale.domain.scaling_constants import CONSTANTS
from tokenscale.domain.signals import ServiceKey, ServiceSignals
from tokenscale.domain.status import MetricsOutage

log = logging.getLogger(__name__)

SERVICE_LABEL = "tokenscale_io_service"
NAMESPACE_LABEL = "namespace"

HISTOGRAMS = {
    "ttft": ["vllm:time_to_first_token_seconds_bucket"],
    # The objective is each request's mean inter-token latency at the percentile (what a user
    # sees per answer): vLLM's per-request histogram. Per-token intervals (the fallback, for a
    # vLLM without it) put every token that shared a step with a long prompt's prefill chunk in
    # the tail, a latency more replicas do not shorten. vLLM renamed the per-token histogram
    # from time_per_output_token to inter_token_latency; the last alternative is the old name.
    "itl": [
        "vllm:request_time_per_output_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:time_per_output_token_seconds_bucket",
    ],
    "e2e": ["vllm:e2e_request_latency_seconds_bucket"],
}
QUEUE_WAIT = "tokenscale_gateway_queue_wait_seconds_bucket"
# Requests by prompt length, for the share no replica count can serve in time (SLOFeasible).
PROMPT_LENGTHS = "vllm:request_prompt_tokens_bucket"
RATES = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    # Per-request token histograms: sum and count both advance when a request finishes.
    "prompt_tokens_sum": "vllm:request_prompt_tokens_sum",
    "prompt_tokens_count": "vllm:request_prompt_tokens_count",
    "generation_tokens_sum": "vllm:request_generation_tokens_sum",
    "generation_tokens_count": "vllm:request_generation_tokens_count",
    "arrivals": "tokenscale_gateway_admitted_total",
    "rejected": "tokenscale_gateway_rejected_total",
}
# The demand over the last tick (domain.scaling_constants.recent_rate_window_s): a step shows
# here a tick after it began. `rate` needs two points in the span: with a scrape slower than
# half of it (7.5 s) the query answers at some ticks only, past the span at none, and where it
# has no answer decide() reads the window's rate alone.
RECENT_RATES = {
    "arrivals_recent": RATES["arrivals"],
    "rejected_recent": RATES["rejected"],
}
GAUGES = {
    "running": ("sum", "vllm:num_requests_running"),
    "waiting": ("sum", "vllm:num_requests_waiting"),
    "kv_cache_usage": ("avg", "vllm:kv_cache_usage_perc"),
    "gateway_queue": ("sum", "tokenscale_gateway_queue_length"),
    "in_flight": ("sum", "tokenscale_gateway_in_flight"),
    "cap": ("max", "tokenscale_gateway_concurrency_cap"),
    "targets_up": ("sum", "up"),
}
# Requests running or waiting (engines and gateways) per service, averaged over the window
# (`decide()`'s concurrency need). The average is of the service's sum at each step, so a
# drained replica stops counting when its series ends, where a sum of per-pod averages would
# keep its last window's load for a whole window after it went. One selector matches the three
# names: `running or waiting` would drop every waiting series, since `or` matches on the labels
# without the metric name and an engine's two gauges carry the same ones. The step is the
# PodMonitor's scrape interval; without one the subquery steps at the global evaluation interval
# (1m by default), one point per window.
IN_FLIGHT = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "tokenscale_gateway_queue_length",
)
SUBQUERY_STEP = SCRAPE_INTERVAL
# When the engine gauges were scraped: the engine's running count, else the gateway's in-flight
# count (a worker whose engine exports nothing yet). `timestamp()` drops the metric name, so for
# one pod the engine's series wins the `or`.
SAMPLED_AT = ("min", "timestamp({engine}{sel}) or timestamp({gateway}{sel})")
SAMPLE_CLOCK = {"engine": "vllm:num_requests_running", "gateway": "tokenscale_gateway_in_flight"}


def escape_label_value(value: str) -> str:
    """Escape for a double-quoted PromQL string: backslash first, then quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_duration(seconds: float) -> str:
    """A duration Prometheus parses: whole milliseconds. `f"{5.0}s"` is "5.0s", which the query
    API refuses ("cannot parse 5.0s to a valid duration"), failing every query."""
    return f"{max(1, round(seconds * 1000))}ms"


def namespace_matcher(namespaces: Sequence[str]) -> str:
    """`{namespace=~"a|b"}` with every name regex- and string-escaped; empty for all."""
    if not namespaces:
        return ""
    pattern = "|".join(re.escape(ns) for ns in namespaces)
    return f'{{{NAMESPACE_LABEL}=~"{escape_label_value(pattern)}"}}'


def names_matcher(names: Sequence[str], namespaces: Sequence[str] = ()) -> str:
    """`{__name__=~"a|b", namespace=~"..."}`: several metrics as one selector."""
    pattern = escape_label_value("|".join(re.escape(name) for name in names))
    namespace = namespace_matcher(namespaces)[1:-1]
    return "{" + ", ".join(filter(None, [f'__name__=~"{pattern}"', namespace])) + "}"


@dataclass(frozen=True)
class QueryPlan:
    """The tick's PromQL strings, built once."""

    queries: dict[str, str]


def build_queries(window: str, namespaces: Sequence[str] = ()) -> QueryPlan:
    if not re.fullmatch(r"[0-9]+[smh]", window):
        raise ValueError(f"window {window!r} must look like 30s, 1m or 1h")
    sel = namespace_matcher(namespaces)
    by = f"{NAMESPACE_LABEL}, {SERVICE_LABEL}"
    queries: dict[str, str] = {}
    for name, metrics in HISTOGRAMS.items():
        parts = [f"sum by ({by}, le) (rate({m}{sel}[{window}]))" for m in metrics]
        queries[name] = " or ".join(parts)
    queue = f"sum by ({by}, le) (rate({QUEUE_WAIT}{sel}[{window}]))"
    queries["ttft"] = (
        f'label_replace({queries["ttft"]}, "part", "engine", "", "") or '
        f'label_replace({queue}, "part", "queue", "", "")'
    )
    prompts = f"sum by ({by}, le) (rate({PROMPT_LENGTHS}{sel}[{window}]))"
    queries["e2e"] = (
        f'label_replace({queries["e2e"]}, "part", "latency", "", "") or '
        f'label_replace({prompts}, "part", "prompt", "", "")'
    )
    recent = prometheus_duration(CONSTANTS.recent_rate_window_s)
    queries["rates"] = " or ".join(
        f'label_replace(sum by ({by}) (rate({metric}{sel}[{span}])), "signal", "{key}", "", "")'
        for rates, span in ((RATES, window), (RECENT_RATES, recent))
        for key, metric in rates.items()
    )
    queries["gauges"] = " or ".join(
        f'label_replace({agg} by ({by}) ({metric}{sel}), "signal", "{key}", "", "")'
        for key, (agg, metric) in GAUGES.items()
    )
    in_flight = names_matcher(IN_FLIGHT, namespaces)
    queries["gauges"] += (
        f" or label_replace(avg_over_time((sum by ({by}) ({in_flight}))"
        f'[{window}:{SUBQUERY_STEP}]), "signal", "in_flight_mean", "", "")'
    )
    agg, template = SAMPLED_AT
    sampled = template.format(sel=sel, **SAMPLE_CLOCK)
    queries["gauges"] += (
        f' or label_replace({agg} by ({by}) ({sampled}), "signal", "sampled_at", "", "")'
    )
    return QueryPlan(queries)


class PrometheusUnavailableError(RuntimeError):
    """Prometheus could not be queried; `outage` says where and why, in words (refused, timed
    out, not found, an HTTP status, not a query result); the message is its summary."""

    def __init__(self, outage: MetricsOutage) -> None:
        super().__init__(outage.summary())
        self.outage = outage


def _key(metric: dict[str, str]) -> ServiceKey | None:
    ns, svc = metric.get(NAMESPACE_LABEL), metric.get(SERVICE_LABEL)
    return (ns, svc) if ns and svc else None


def _value(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def _group_buckets(
    samples: Iterable[dict[str, Any]], part: str | None = None
) -> dict[ServiceKey, tuple[tuple[float, float], ...]]:
    """Buckets per service; `part` keeps only the series tagged with it (the TTFT query)."""
    grouped: defaultdict[ServiceKey, list[tuple[float, float]]] = defaultdict(list)
    for sample in samples:
        key = _key(sample["metric"])
        if part is not None and sample["metric"].get("part") != part:
            continue
        if key is not None and "le" in sample["metric"]:
            grouped[key].append((float(sample["metric"]["le"]), _value(sample)))
    return {k: tuple(sorted(v)) for k, v in grouped.items()}


def _group_signals(samples: Iterable[dict[str, Any]]) -> dict[ServiceKey, dict[str, float]]:
    grouped: defaultdict[ServiceKey, dict[str, float]] = defaultdict(dict)
    for sample in samples:
        key = _key(sample["metric"])
        signal = sample["metric"].get("signal")
        if key is not None and signal:
            grouped[key][signal] = _value(sample)
    return dict(grouped)


class PrometheusSignals:
    """Fetch one tick's signals for every service."""

    def __init__(
        self, url: str, window: str = "1m", timeout_s: float = 5.0, namespaces: Sequence[str] = ()
    ) -> None:
        # Retry only an overloaded Prometheus's 5xx answers within a tick. A refused or timed-out
        # connection is not retried: the next tick asks again, and urllib3 would log a warning
        # carrying the whole URL-encoded query for every retry of every tick.
        retry = Retry(
            total=2,
            connect=0,
            read=0,
            other=0,
            status=2,
            backoff_factor=0.3,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=("GET", "POST"),
        )
        # "http://p:9090/" would send "//api/v1/query".
        self.client = PrometheusConnect(url=url.rstrip("/"), disable_ssl=True, retry=retry)
        self.url = url
        self.shown_url = display_url(url)
        self.timeout_s = timeout_s
        self.plan = build_queries(window, namespaces)
        self.queries_sent = 0
        self.errors = 0
        self.outage: MetricsOutage | None = None  # the failure state last logged

    def _query(self, promql: str) -> list[dict[str, Any]]:
        self.queries_sent += 1
        try:
            result: list[dict[str, Any]] = self.client.custom_query(
                promql,
                params={"timeout": prometheus_duration(self.timeout_s)},
                timeout=self.timeout_s,
            )
            if not isinstance(result, list):
                raise TypeError(f"data.result is {type(result).__name__}, not a list")
        except Exception as exc:  # requests, urllib3 and the client's own errors alike
            self.errors += 1
            outage = classify(exc, self.shown_url, self.timeout_s)
            self._log_change(outage, exc)
            raise PrometheusUnavailableError(outage) from exc
        return result

    def _log_change(self, outage: MetricsOutage | None, exc: BaseException | None = None) -> None:
        """One line when Prometheus starts failing, fails differently, or answers again; the
        exception's full text once, at debug level. Never a line per tick."""
        if outage == self.outage:
            return
        if outage is not None:
            log.warning("%s; every service's replicas are held until it answers", outage.summary())
            log.debug("Prometheus query failed: %s", _details(exc))
        else:
            log.info("Prometheus at %s answers again", self.shown_url)
        self.outage = outage

    def fetch(self) -> dict[ServiceKey, ServiceSignals]:
        """All services' signals; raises PrometheusUnavailableError when any query fails (a partial
        picture would read as 'no load' and must not drive a scale-down)."""
        started = time.monotonic()
        answers = {name: self._query(q) for name, q in self.plan.queries.items()}
        self._log_change(None)
        ttft = _group_buckets(answers["ttft"], "engine")
        queue = _group_buckets(answers["ttft"], "queue")
        itl = _group_buckets(answers["itl"])
        e2e = _group_buckets(answers["e2e"], "latency")
        prompts = _group_buckets(answers["e2e"], "prompt")
        rates = _group_signals(answers["rates"])
        gauges = _group_signals(answers["gauges"])
        stamps = {k: g.pop("sampled_at") for k, g in gauges.items() if "sampled_at" in g}
        keys = set(ttft) | set(itl) | set(rates) | set(gauges)
        log.debug(
            "prometheus tick: %d queries, %d services, %.3f s",
            len(answers),
            len(keys),
            time.monotonic() - started,
        )
        return {
            key: ServiceSignals(
                sampled_at=stamps.get(key),
                ttft_buckets=ttft.get(key, ()),
                queue_wait_buckets=queue.get(key, ()),
                itl_buckets=itl.get(key, ()),
                e2e_buckets=e2e.get(key, ()),
                prompt_buckets=prompts.get(key, ()),
                rates=rates.get(key, {}),
                gauges=gauges.get(key, {}),
            )
            for key in keys
        }


def _details(exc: BaseException | None) -> str:
    """The exception chain for the debug log, with the URL-encoded query cut out."""
    parts: list[str] = []
    while exc is not None and len(parts) < 4:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return re.sub(r"\?query=[^\s'\")]*", "?query=...", " <- ".join(parts))

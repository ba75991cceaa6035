"""Raw per-service signals as Prometheus returns them, and their reduction to an Observation."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenscale.domain.histogram import quantile
from tokenscale.domain.observation import Observation
from tokenscale.domain.ttft_objective import in_reach_percentile

Buckets = tuple[tuple[float, float], ...]
ServiceKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class ServiceSignals:
    """One service's series from one tick's queries (rates over the window, gauges now).
    `sampled_at` is when Prometheus scraped the oldest engine gauge of the service (its sample
    timestamp, not the time of the query): a Prometheus that stopped scraping still answers
    with the last values for five minutes, and only their own time tells they are old."""

    sampled_at: float | None = None
    ttft_buckets: Buckets = ()
    # The gateway's wait for a slot under the concurrency cap, before the engine sees a request.
    queue_wait_buckets: Buckets = ()
    itl_buckets: Buckets = ()
    e2e_buckets: Buckets = ()
    # Requests by prompt length (vLLM's request_prompt_tokens histogram): which are out of reach.
    prompt_buckets: Buckets = ()
    rates: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadFacts:
    """What the cluster says about the service's workload at this tick."""

    ready_replicas: int
    current_replicas: int
    starting_since: tuple[float, ...] = ()
    current_cap: int | None = None
    schedulable_replicas: int | None = None


def _mean_per_request(token_rate: float | None, request_rate: float | None) -> float | None:
    """Tokens per request: 1200 prompt tokens/s over 3 requests/s = 400 tokens each."""
    if token_rate is None or not request_rate:
        return None
    return token_rate / request_rate


def mean_tokens(rates: dict[str, float], name: str) -> float | None:
    """Mean tokens per finished request, from the per-request histogram's sum and count: both
    advance when a request finishes. The token counter over completions is the fallback; it
    counts tokens of requests still running, so while requests last about as long as the
    window it reads high: 8 requests of 2000-token prompts admitted in a 30 s window, 2 of
    them finished -> 16000 / 2 = 8000 tokens "per request" instead of 2000 (and a KV-cache
    ceiling for the cap four times too low)."""
    total, count = rates.get(f"{name}_sum"), rates.get(f"{name}_count")
    if total is not None and count:
        return total / count
    return _mean_per_request(rates.get(name), rates.get("requests"))


def client_ttft(q: float, signals: ServiceSignals) -> float | None:
    """TTFT as a client sees it: the gateway's queue wait plus the engine's TTFT (whose clock
    starts at admission). The sum of the two quantiles is a slightly high, so safe, estimate of
    the quantile of the sum: p95 queue wait 1.6 s + p95 engine TTFT 0.24 s -> 1.84 s, where the
    engine alone would say 0.24 s and call a queue of waiting clients within objective."""
    engine = quantile(q, signals.ttft_buckets)
    if engine is None:
        return None
    return engine + (quantile(q, signals.queue_wait_buckets) or 0.0)


def _demand(rates: dict[str, float], admitted: str, rejected: str) -> float | None:
    """The gateways' admitted rate plus what they turned away (429s are demand too); None
    without the admitted series."""
    arrival = rates.get(admitted)
    return None if arrival is None else arrival + rates.get(rejected, 0.0)


def to_observation(
    signals: ServiceSignals,
    percentile: float,
    workload: WorkloadFacts,
    out_of_reach_share: float | None = None,
) -> Observation:
    """Reduce signals to what `decide()` reads, at the service's own SLO percentile. TTFT (and
    the prompt length its objective is read at) over the requests in reach when a share of the
    window's prompts is out of it (domain.ttft_objective.in_reach_percentile). The observation
    is as old as its samples; `decide()` holds when that is over a window."""
    q = percentile / 100.0
    q_in_reach = in_reach_percentile(percentile, out_of_reach_share) / 100.0
    rates, gauges = signals.rates, signals.gauges
    completions = rates.get("requests")
    waiting = None
    if "waiting" in gauges or "gateway_queue" in gauges:
        waiting = gauges.get("waiting", 0.0) + gauges.get("gateway_queue", 0.0)
    arrival = _demand(rates, "arrivals", "rejected")
    recent = _demand(rates, "arrivals_recent", "rejected_recent")
    return Observation(
        sampled_at=signals.sampled_at,
        ttft_s=client_ttft(q_in_reach, signals),
        itl_s=quantile(q, signals.itl_buckets),
        e2e_s=quantile(q, signals.e2e_buckets),
        arrival_rate=arrival if arrival is not None else completions,
        arrival_rate_recent=recent,
        prompt_tokens=mean_tokens(rates, "prompt_tokens"),
        prompt_tokens_at_percentile=quantile(q_in_reach, signals.prompt_buckets),
        out_of_reach_share=out_of_reach_share or 0.0,
        output_tokens=mean_tokens(rates, "generation_tokens"),
        running=gauges.get("running"),
        waiting=waiting,
        in_flight_mean=gauges.get("in_flight_mean"),
        kv_cache_usage=gauges.get("kv_cache_usage"),
        ready_replicas=workload.ready_replicas,
        starting_since=workload.starting_since,
        current_replicas=workload.current_replicas,
        current_cap=workload.current_cap,
        schedulable_replicas=workload.schedulable_replicas,
    )

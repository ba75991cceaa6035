"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILE_SECONDS = Histogram(
    "tokenscale_reconcile_duration_seconds",
    "Lifecycle reconcile of one InferenceService.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TICK_SECONDS = Histogram(
    "tokenscale_autoscale_tick_duration_seconds",
    "One autoscale tick for all services (queries, decisions, writes).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16),
)
QUERIES_PER_TICK = Gauge(
    "tokenscale_prometheus_queries_per_tick", "PromQL queries sent in the last tick."
)
QUERY_ERRORS = Counter("tokenscale_prometheus_query_errors_total", "Failed PromQL ticks.")
DECISIONS = Counter(
    "tokenscale_decisions_total", "Autoscaling decisions by kind.", ["kind", "mode"]
)
SERVICES = Gauge("tokenscale_services", "InferenceServices the autoscaler sees.")
DESIRED = Gauge(
    "tokenscale_desired_replicas", "Replicas tokenscale wants.", ["namespace", "service"]
)
CURRENT = Gauge(
    "tokenscale_current_replicas", "Replicas the Deployment asks for.", ["namespace", "service"]
)
CAP = Gauge("tokenscale_concurrency_cap", "Per-replica concurrency cap.", ["namespace", "service"])


def serve(port: int) -> None:
    """Expose /metrics on `port` (a daemon thread)."""
    start_http_server(port)


def forget(namespace: str, service: str) -> None:
    """Drop a deleted service's series."""
    for gauge in (DESIRED, CURRENT, CAP):
        try:
            gauge.remove(namespace, service)
        except KeyError:
            pass

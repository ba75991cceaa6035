"""The gateway's own Prometheus metrics, in a registry of their own (never the global one, so
tests and the in-process simulator cannot collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Queue waits range from nothing (admitted at once) to tens of seconds under overload.
REJECT_REASONS = (
    "queue_full", "draining", "unknown_route", "unauthorized", "body_413", "body_408", "body_503",
)  # fmt: skip
QUEUE_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(
        self,
        queue_length: Callable[[], float],
        in_flight: Callable[[], float],
        cap: Callable[[], float],
        queue_limit: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Gauges read the admission state at scrape time: nothing to keep in sync on each request.
        Gauge(
            "tokenscale_gateway_queue_length", "Requests waiting for a slot.", registry=r
        ).set_function(queue_length)
        Gauge(
            "tokenscale_gateway_in_flight", "Requests admitted and not finished.", registry=r
        ).set_function(in_flight)
        Gauge(
            "tokenscale_gateway_concurrency_cap", "Current per-replica concurrency cap.", registry=r
        ).set_function(cap)
        Gauge(
            "tokenscale_gateway_queue_limit", "Current bound on the waiting queue.", registry=r
        ).set_function(queue_limit)
        self.admitted = Counter(
            "tokenscale_gateway_admitted", "Requests admitted to the engine.", registry=r
        )
        self.rejected = Counter(
            "tokenscale_gateway_rejected",
            "Requests refused by the gateway (queue_full: 429, draining: 503, unknown_route: "
            "404/405, unauthorized: 401, body_413/body_408/body_503: body too large, too slow, "
            "or over the gateway's body memory budget).",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.queue_wait = Histogram(
            "tokenscale_gateway_queue_wait_seconds",
            "Time from arrival at the gateway to admission.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )

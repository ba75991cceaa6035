"""Metric shapes (type, label names, histogram buckets) of a /metrics text, the families the
autoscaler reads (taken from the Prometheus adapter's own query tables), and a real Prometheus
scraping one worker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.tools import running_prometheus, write_scrape_config
from tests.worker.conftest import free_port
from tokenscale.adapters import prometheus as adapter

_SUFFIXES = ("_bucket", "_total", "_sum", "_count")


@dataclass(frozen=True)
class Shape:
    type: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]


def shapes(text: str, ignore_labels: frozenset[str] = frozenset()) -> dict[str, Shape]:
    """Family name (as the parser names it: counters without `_total`) -> its shape."""
    out: dict[str, Shape] = {}
    for fam in text_string_to_metric_families(text):
        labels: set[str] = set()
        buckets: set[float] = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le"} - ignore_labels
            if s.name.endswith("_bucket"):
                buckets.add(float(s.labels["le"]))
        out[fam.name] = Shape(fam.type, tuple(sorted(labels)), tuple(sorted(buckets)))
    return out


def family(series: str) -> str:
    """vllm:request_prompt_tokens_sum -> vllm:request_prompt_tokens."""
    for suffix in _SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series


def autoscaler_families() -> list[tuple[str, ...]]:
    """Each engine family the adapter queries; a tuple holds alternatives joined with `or`
    (vLLM's current name first, then the one it replaced)."""
    groups: list[tuple[str, ...]] = [
        tuple(family(m) for m in metrics) for metrics in adapter.HISTOGRAMS.values()
    ]
    groups += [(family(m),) for m in adapter.RATES.values()]
    groups += [(family(m),) for _agg, m in adapter.GAUGES.values()]
    return sorted({g for g in groups if g[0].startswith("vllm:")})


@contextlib.contextmanager
def prometheus_scraping(target: str, labels: dict[str, str], work: Path) -> Iterator[str]:
    """A real Prometheus scraping `target` (host:port) every second, with target labels as a
    cluster's PodMonitor would add them; yields its URL."""
    write_scrape_config(work, target, labels)
    with running_prometheus(work, free_port()) as url:
        yield url

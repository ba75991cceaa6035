"""docs/operations.md lists exactly the worker series the Prometheus adapter queries."""

from __future__ import annotations

import re
from pathlib import Path

from tokenscale.adapters import prometheus

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SUFFIXES = ("_bucket", "_sum", "_count")


def family(series: str) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def queried() -> set[str]:
    names = {s for group in prometheus.HISTOGRAMS.values() for s in group}
    names |= {prometheus.QUEUE_WAIT, *prometheus.RATES.values()}
    names |= {series for _agg, series in prometheus.GAUGES.values()}
    return {family(n) for n in names}


def documented() -> set[str]:
    text = DOC.read_text()
    section = text[text.index("## Worker metrics Prometheus must see") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return {m for m in re.findall(r"`([a-z0-9_:]+)`", section) if "_" in m or m == "up"} - {
        "namespace",
        "tokenscale_io_service",
    }


def test_every_queried_series_is_documented_and_nothing_else() -> None:
    assert queried() - documented() == set(), "queried but not in docs/operations.md"
    extra = {d for d in documented() if d.startswith(("vllm:", "tokenscale_gateway_"))}
    assert extra - queried() == set(), "in docs/operations.md but not queried"

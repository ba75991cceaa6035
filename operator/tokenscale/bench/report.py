"""Benchmark output: the table, the JSON document and the plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenscale.bench.runner import RunResult

BOUND = "lower bound"

COLUMNS = (
    ("policy", "{}"),
    ("config", "{}"),
    ("SLO att.", "{:.2%}"),
    ("feasible att.", "{:.2%}"),
    ("infeasible", "{:.1%}"),
    ("GPU-h", "{:.2f}"),
    ("TTFT p50", "{:.2f}s"),
    ("p95", "{:.2f}s"),
    ("p99", "{:.2f}s"),
    ("ITL p95", "{:.0f}ms"),
    ("scale ev.", "{}"),
    ("rejected", "{}"),
)


def _format(fmt: str, v: Any) -> str:
    return "-" if isinstance(v, float) and v != v else fmt.format(v)  # NaN: not measured


def _cells(r: RunResult) -> list[str]:
    values: list[Any] = [
        r.policy,
        r.config,
        r.slo_attainment,
        r.feasible_attainment,
        r.infeasible_share,
        r.gpu_hours,
        r.ttft_p50_s,
        r.ttft_p95_s,
        r.ttft_p99_s,
        r.itl_p95_s * 1000,
        r.scale_events,
        r.rejected,
    ]
    return [_format(fmt, v) for (_, fmt), v in zip(COLUMNS, values, strict=True)]


def table(results: Sequence[RunResult]) -> str:
    """A Markdown table, one row per policy configuration."""
    rows = [[c for c, _ in COLUMNS], *(_cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_json(path: str | Path, scenario: dict[str, Any], results: Sequence[RunResult]) -> None:
    doc = {"scenario": scenario, "results": [r.row() for r in results]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def plotted(results: Sequence[RunResult]) -> list[RunResult]:
    """The runs worth a line: every tokenscale run, and per other policy the cheapest
    configuration at >= 99% attainment (else its best attainment); not the lower bound."""
    keep = [r for r in results if r.policy == "tokenscale"]
    others = (r.policy for r in results if r.policy not in ("tokenscale", BOUND))
    for policy in dict.fromkeys(others):
        runs = [r for r in results if r.policy == policy]
        good = [r for r in runs if r.slo_attainment >= 0.99]
        if good:
            keep.append(min(good, key=lambda r: r.gpu_hours))
        else:
            keep.append(max(runs, key=lambda r: r.slo_attainment))
    return keep


def plot(
    path: str | Path, title: str, arrival_per_min: Sequence[int], results: Sequence[RunResult]
) -> None:
    """Arrival rate, replicas per policy, TTFT p95 per minute and concurrency cap over time,
    for the runs `plotted` picks; below, SLO attainment against GPU-hours for every run with
    the lower bound's curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 16))
    grid = fig.add_gridspec(5, 1, height_ratios=[1, 1, 1, 1, 1.4])
    ax = [fig.add_subplot(grid[0])]
    ax += [fig.add_subplot(grid[i], sharex=ax[0]) for i in (1, 2, 3)]
    _frontier(fig.add_subplot(grid[4]), results)
    minutes = list(range(len(arrival_per_min)))
    ax[0].plot(minutes, [c / 60 for c in arrival_per_min], color="black")
    ax[0].set_ylabel("arrivals (req/s)")
    ax[0].set_title(title)
    for r in plotted(results):
        label = f"{r.policy} ({r.config})"
        t = [x / 60 for x in r.times]
        ax[1].step(t, r.replicas, where="post", label=label, linewidth=1)
        ax[2].plot(range(len(r.minute_ttft_p95)), r.minute_ttft_p95, linewidth=1, label=label)
        ax[3].step(t, r.caps, where="post", linewidth=1, label=label)
    ax[1].set_ylabel("replicas")
    ax[1].legend(fontsize=7, ncol=2)
    ax[2].set_ylabel("TTFT p95 per minute (s)")
    ax[2].set_yscale("log")
    ax[3].set_ylabel("concurrency cap")
    ax[3].set_xlabel("minute")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _frontier(ax: Any, results: Sequence[RunResult]) -> None:
    """Attainment vs GPU-hours: one marker per run, one line per policy, the bound's curve."""
    for policy in dict.fromkeys(r.policy for r in results):
        runs = sorted((r for r in results if r.policy == policy), key=lambda r: r.gpu_hours)
        if policy == BOUND:
            curve = runs[0].curve
            ax.plot([g for _, g in curve], [a * 100 for a, _ in curve], "k--", label=BOUND)
            continue
        gpu = [r.gpu_hours for r in runs]
        ax.plot(gpu, [r.slo_attainment * 100 for r in runs], "o-", ms=4, lw=0.8, label=policy)
    ax.axhline(99.0, color="grey", lw=0.6)
    ax.set_ylim(90, 100.1)
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.legend(fontsize=7, ncol=3)

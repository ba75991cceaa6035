"""Attainment against GPU-hours per workload, one curve per policy, from the outputs of

    python -m tokenscale.bench.tune --json out/tune.json                      # baselines
    python -m tokenscale.bench.tune --tokenscale-sweep --json out/sweep.json  # tokenscale
    python -m tokenscale.bench.frontier --tune out/tune.json --sweep out/sweep.json \\
        --out-dir docs/img

Each baseline's curve is the runs of its threshold search that ran to the end (a run stopped
early for missing too many has no GPU-hours to plot); tokenscale's is its utilization-target
sweep; the lower bound's is its GPU-hours at each attainment. The 99.0% line crosses every
curve at the GPU-hours the tables report (`search.at_attainment`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from tokenscale.bench.search import at_attainment

Curve = list[tuple[float, float]]  # (attainment, GPU-hours)


def curves(tune: dict[str, Any], sweep: list[dict[str, Any]]) -> dict[str, dict[str, Curve]]:
    """Per workload, per policy: its (attainment, GPU-hours) points, cheapest first."""
    out: dict[str, dict[str, Curve]] = {}
    for name, work in tune.get("workloads", {}).items():
        per = out.setdefault(name, {})
        for fam in work["families"]:
            pts = [(p[2], p[3]) for p in fam["points"] if not p[4]]
            per[fam["family"]] = sorted(pts, key=lambda p: p[1])
    for row in sweep:
        per = out.setdefault(row["workload"], {})
        per["tokenscale"] = sorted(((p[1], p[2]) for p in row["points"]), key=lambda p: p[1])
        finite = [(a, g) for a, g in row.get("bound_curve", []) if math.isfinite(g)]
        if finite:
            per["lower bound"] = sorted(finite, key=lambda p: p[1])
    return out


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def plot(path: Path, title: str, per_policy: dict[str, Curve]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for policy, pts in per_policy.items():
        if not pts:
            continue
        gpu = [g for _, g in pts]
        att = [a * 100 for a, _ in pts]
        if policy == "lower bound":
            ax.plot(gpu, att, "k--", lw=1, label=policy)
            continue
        at99 = at_attainment(pts)
        label = policy if math.isinf(at99) else f"{policy} ({at99:.2f} GPU-h at 99.0%)"
        ax.plot(gpu, att, "o-", ms=4, lw=0.9, label=label)
    ax.axhline(99.0, color="grey", lw=0.6)
    ax.set_ylim(96, 100.05)
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenscale.bench.frontier")
    parser.add_argument("--tune", default="out/tune.json")
    parser.add_argument("--sweep", default="out/sweep.json")
    parser.add_argument("--out-dir", default="out")
    args = parser.parse_args(argv)
    tune = json.loads(Path(args.tune).read_text())
    sweep = json.loads(Path(args.sweep).read_text())
    for name, per in curves(tune, sweep).items():
        path = Path(args.out_dir) / f"frontier-{slug(name)}.png"
        plot(path, f"{name}: SLO attainment against GPU-hours", per)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

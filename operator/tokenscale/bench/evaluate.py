"""Run a named workload set over several seeds and report each policy's mean and 95% interval:

    python -m tokenscale.bench.evaluate --set validation --seeds 5 --jobs 2 \\
        --policies tokenscale,tokenscale-batch-off,kpa,apa --json out/validation.json \\
        [--world drawn]

Per workload and seed: tokenscale with its defaults (and with batch tuning off when
`tokenscale-batch-off` is named), each named baseline at its global setting
(`tuned.GLOBAL`, chosen on the training set), and the lower bound at 99.0% and at each run's own
attainment (a run under it fails the command: a bug in the bound). The interval is Student's t
over the seeds (mean +/- t(0.975, n-1) x sd / sqrt(n)).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from tokenscale.bench import tuned
from tokenscale.bench.baselines import FAMILIES
from tokenscale.bench.bound import lower_bound, warm_lead
from tokenscale.bench.fleet import ROUTINGS
from tokenscale.bench.policies import Policy, Tokenscale
from tokenscale.bench.runner import simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.sets import Workload, training, validation
from tokenscale.cli.usage import integer

# t(0.975, n - 1) for n = 2..10 seeds
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% interval); half-width nan for one value, and for values
    that are not all finite (a bound that no replica count reaches is inf)."""
    mean = statistics.fmean(values)
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return mean, math.nan
    t = T975.get(len(values), 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def _set(name: str, seeds: int) -> list[Workload]:
    return training() if name == "training" else validation(seeds=seeds)


def _configs(scenario: Scenario, names: list[str]) -> list[Policy]:
    out: list[Policy] = [Tokenscale(scenario)] if "tokenscale" in names else []
    if "tokenscale-batch-off" in names:
        out.append(Tokenscale(replace(scenario, batch_tuning=False)))
    for name in names:
        setting = tuned.GLOBAL.get(name)
        if name in FAMILIES and setting is not None:
            p = FAMILIES[name].make(setting[0], setting[1], 1, scenario.max_replicas)
            p.config += " (global)"
            out.append(p)
    return out


@dataclass(frozen=True)
class Job:
    """One workload at one seed, as a worker process rebuilds it (a picklable recipe)."""

    set_name: str
    seeds: int
    index: int  # the workload's position in the set
    seed: int
    policies: list[str]
    world: str
    max_num_batched_tokens: int | None
    ttft_per_1k_s: float
    routing: str = "least-request"


def _job(job: Job) -> dict[str, Any]:
    work = _set(job.set_name, job.seeds)[job.index]
    base = Scenario(
        world=job.world,
        max_num_batched_tokens=job.max_num_batched_tokens,
        ttft_per_1k_s=job.ttft_per_1k_s,
        routing=job.routing,
    )
    seed = job.seed
    scenario = work.scenario(base, seed)
    trace = work.trace(scenario, seed)
    bound = lower_bound(scenario, trace)
    initial = bound.warm_start(warm_lead(scenario))
    runs = []
    for p in _configs(scenario, job.policies):
        r = simulate(trace, scenario, p, initial)
        floor = bound.gpu_hours(r.slo_attainment)
        runs.append(
            {
                "policy": r.policy,
                "config": r.config,
                "slo_attainment": r.slo_attainment,
                "slo_attainment_feasible": r.feasible_attainment,
                "gpu_hours": r.gpu_hours,
                "bound_at_own": floor,
                "infeasible_share": r.infeasible_share,
            }
        )
    return {
        "workload": work.name,
        "seed": seed,
        "requests": len(trace),
        "infeasible_share": runs[0]["infeasible_share"] if runs else math.nan,
        "bound_at_99": bound.gpu_hours(0.99),
        "runs": runs,
    }


def _fmt(mean: float, half: float, pct: bool = False) -> str:
    if pct:
        return f"{mean:.2%}" + ("" if math.isnan(half) else f" ± {half:.2%}")
    return f"{mean:.2f}" + ("" if math.isnan(half) else f" ± {half:.2f}")


def table(done: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | seeds | policy | SLO attainment | over feasible | GPU-h | runs >= 99% "
        "| x bound at 99% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for work in dict.fromkeys(d["workload"] for d in done):
        rows = [d for d in done if d["workload"] == work]
        b_mean, b_half = interval([d["bound_at_99"] for d in rows])
        keys = dict.fromkeys((r["policy"], r["config"]) for d in rows for r in d["runs"])
        for policy, config in keys:
            runs = [
                r for d in rows for r in d["runs"] if (r["policy"], r["config"]) == (policy, config)
            ]
            att = interval([r["slo_attainment"] for r in runs])
            feas = interval([r["slo_attainment_feasible"] for r in runs])
            gpu = interval([r["gpu_hours"] for r in runs])
            ok = sum(r["slo_attainment"] >= 0.99 for r in runs)
            label = f"{policy} ({config})"
            ratio = f"{gpu[0] / b_mean:.2f}x" if math.isfinite(b_mean) else "-"
            lines.append(
                f"| {work} | {len(rows)} | {label} | {_fmt(*att, pct=True)} | "
                f"{_fmt(*feas, pct=True)} | {_fmt(*gpu)} | "
                f"{ok}/{len(runs)} | {ratio} |"
            )
        infeasible = statistics.fmean(d["infeasible_share"] for d in rows)
        lines.append(
            f"| {work} | {len(rows)} | lower bound at 99.0% (infeasible: {infeasible:.1%}) | | | "
            f"{_fmt(b_mean, b_half)} | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenscale.bench.evaluate")
    parser.add_argument(
        "--set", dest="set_name", choices=("training", "validation"), default="validation"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per validation workload")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--policies", default="tokenscale,tokenscale-batch-off," + ",".join(FAMILIES)
    )
    parser.add_argument("--only", default="", help="comma-separated workload names to keep")
    parser.add_argument("--json", dest="json_path", default="out/evaluate.json")
    parser.add_argument("--world", choices=("known", "drawn"), default="known")
    parser.add_argument(
        "--max-num-batched-tokens",
        type=integer(256),
        default=None,
        help="the per-step token budget (spec.engine.maxNumBatchedTokens) for every policy and "
        "the bound; default: the planner's",
    )
    parser.add_argument(
        "--slo-ttft-per-1k",
        type=float,
        default=0.0,
        help="a length-aware TTFT objective for every workload: seconds more per 1000 prompt "
        "tokens (spec.slo.ttftSecondsPer1kPromptTokens); default 0, one objective for all",
    )
    parser.add_argument(
        "--routing",
        choices=ROUTINGS,
        default="least-request",
        help="how the balancer picks a replica: least-request (Envoy's, what a Service behind "
        "a mesh gets) or least-prefill (fewest prompt tokens still to prefill: a prefill-aware "
        "gateway, not built; docs/disaggregation.md)",
    )
    parser.add_argument(
        "--table-from", default=None, help="print the table of an earlier run's JSON and exit"
    )
    args = parser.parse_args(argv)
    if args.table_from:
        earlier = json.loads(Path(args.table_from).read_text())
        print(table(earlier))
        return _report_under_bound(earlier)
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    works = _set(args.set_name, args.seeds)
    jobs = [
        Job(
            args.set_name,
            args.seeds,
            i,
            seed,
            names,
            args.world,
            args.max_num_batched_tokens,
            args.slo_ttft_per_1k,
            args.routing,
        )
        for i, w in enumerate(works)
        if not only or w.name in only
        for seed in w.seeds
    ]
    done: list[dict[str, Any]] = []
    out = Path(args.json_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Pool(args.jobs) as pool:
        for row in pool.imap(_job, jobs, chunksize=1):
            done.append(row)
            # Written after every job: a long run stopped early keeps what it finished, and
            # `--table-from` prints it.
            out.write_text(json.dumps(done, indent=1) + "\n")
    print(table(done))
    return _report_under_bound(done)


def _report_under_bound(done: list[dict[str, Any]]) -> int:
    """1 (and each case printed) if a run came in under the bound at its own attainment."""
    under = [
        (d["workload"], d["seed"], r["policy"], r["config"])
        for d in done
        for r in d["runs"]
        if r["gpu_hours"] < r["bound_at_own"] * (1 - 1e-12)
    ]
    for u in under:
        print(f"UNDER THE LOWER BOUND (a bug in the bound): {u}")
    checked = sum(len(d["runs"]) for d in done)
    print(f"{checked} runs checked against the lower bound at their own attainment")
    return 1 if under else 0


if __name__ == "__main__":
    raise SystemExit(main())

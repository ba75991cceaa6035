"""Search every baseline on the training set and print the settings for `tuned.py`:

    python -m tokenscale.bench.tune [--jobs 2] [--json out/tune.json] [--set training]

Per workload and baseline the hindsight setting and its GPU-hours at exactly 99.0% (linear
between the bracketing runs); then per baseline the global setting (the cheapest reaching 99% on
every workload of the set). With `--set validation` it only reports (the validation set is never
used to choose).
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from tokenscale.bench.baselines import FAMILIES
from tokenscale.bench.bound import lower_bound, warm_lead
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.search import (
    Searched,
    at_attainment,
    global_setting,
    search,
    sweep_tokenscale,
)
from tokenscale.bench.sets import Workload, training, validation
from tokenscale.bench.suite import BOUND_CURVE, workload_key


def _set(name: str) -> list[Workload]:
    """The standard two of the training set (the long-output day's short prompts leave every
    baseline's attainment to its first minutes, not its threshold), or the validation set."""
    return training()[:2] if name == "training" else validation()


def _sweep(args: tuple[str, int]) -> dict[str, Any]:
    """tokenscale's utilization target swept on one workload: its GPU-hours at 99.0%."""
    set_name, index = args
    work = _set(set_name)[index]
    scenario = work.scenario(Scenario(), work.seeds[0])
    trace = work.trace(scenario, work.seeds[0])
    initial = lower_bound(scenario, trace).warm_start(warm_lead(scenario))
    runs = sweep_tokenscale(scenario, trace, initial)
    pts = [(r.slo_attainment, r.gpu_hours) for _, r in runs]
    bound = lower_bound(scenario, trace)
    return {
        "workload": work.name,
        "points": [[u, round(r.slo_attainment, 5), round(r.gpu_hours, 3)] for u, r in runs],
        "gpu_hours_at_99": at_attainment(pts),
        "bound_at_99": bound.gpu_hours(0.99),
        "bound_curve": [[a, round(bound.gpu_hours(a), 3)] for a in BOUND_CURVE],
    }


def _job(args: tuple[str, int, str]) -> tuple[int, str, Searched, str]:
    set_name, index, family = args
    work = _set(set_name)[index]
    scenario = work.scenario(Scenario(), work.seeds[0])
    trace = work.trace(scenario, work.seeds[0])
    initial = lower_bound(scenario, trace).warm_start(warm_lead(scenario))
    return (
        index,
        family,
        search(scenario, trace, FAMILIES[family], initial),
        workload_key(trace, scenario),
    )


def _row(s: Searched) -> dict[str, Any]:
    best = s.best
    pts = [(p.attainment, p.result.gpu_hours) for p in s.points if not p.result.gave_up]
    return {
        "family": s.family,
        "best": None
        if best is None
        else [best.threshold, best.cap_option, best.attainment, best.result.gpu_hours],
        "gpu_hours_at_99": at_attainment(pts),
        "points": [
            [
                p.threshold,
                p.cap_option,
                round(p.attainment, 5),
                round(p.result.gpu_hours, 3),
                p.result.gave_up,
            ]
            for p in s.points
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenscale.bench.tune")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--set", dest="set_name", choices=("training", "validation"), default="training"
    )
    parser.add_argument("--json", dest="json_path", default="out/tune.json")
    parser.add_argument(
        "--tokenscale-sweep",
        action="store_true",
        help="sweep tokenscale's utilization target instead of searching the baselines",
    )
    parser.add_argument("--only", default="", help="comma-separated workload names to search")
    args = parser.parse_args(argv)
    workloads = _set(args.set_name)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    if args.tokenscale_sweep:
        with Pool(args.jobs) as pool:
            swept = pool.map(_sweep, [(args.set_name, i) for i in range(len(workloads))], 1)
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(swept, indent=1) + "\n")
        for row in swept:
            print(row)
        return 0
    jobs = [
        (args.set_name, i, f)
        for i, w in enumerate(workloads)
        if not only or w.name in only
        for f in FAMILIES
    ]
    with Pool(args.jobs) as pool:
        done = pool.map(_job, jobs, chunksize=1)
    doc: dict[str, Any] = {"set": args.set_name, "workloads": {}, "global": {}}
    by_family: dict[str, list[Searched]] = {}
    for index, family, searched, key in done:
        doc["workloads"].setdefault(workloads[index].name, {"key": key, "families": []})
        doc["workloads"][workloads[index].name]["families"].append(_row(searched))
        by_family.setdefault(family, []).append(searched)
        best = searched.best
        if best is not None:
            print(f"HINDSIGHT[({key!r}, {family!r})] = ({best.threshold}, {best.cap_option!r})")
    for family, searched_list in by_family.items():
        setting = global_setting(searched_list)
        doc["global"][family] = setting
        print(f"GLOBAL[{family!r}] = {setting!r}")
    Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_path).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The issue's targets, checked on the standard scenario (embedded day and Azure conversation
trace x6, both in the training set) and the long-output day:

- tokenscale >= 99% SLO attainment with its defaults;
- the lower bound (`bound.py`) below every policy's GPU-hours at that policy's attainment (a
  policy under it is a bug in the bound);
- batch tuning beats the static cap on the long-output day;
- a one-hour replay >= 200x faster than real time.

Reported, not targets (winning is not what this check asserts): tokenscale's GPU-hours against
the bound at 99.0%, and against the cheapest baseline at >= 99% with its global and with its
hindsight-tuned setting, whatever they show."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from tokenscale.bench import report
from tokenscale.bench.bound import lower_bound
from tokenscale.bench.cli import scenario_from
from tokenscale.bench.runner import RunResult
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.suite import ALL_POLICIES, run_suite
from tokenscale.bench.traces import AZURE_TRACE_ENV, Trace, default_azure_trace, load
from tokenscale.bench.workload import default_workload, long_output_workload

ATTAINMENT = 0.99
SPEEDUP = 200.0
BOUND = report.BOUND


def _cheapest(results: list[RunResult], kind: str) -> RunResult | None:
    good = [
        r
        for r in results
        if r.policy not in ("tokenscale", BOUND)
        and r.slo_attainment >= ATTAINMENT
        and (kind in r.config or r.policy == "static")
    ]
    return min(good, key=lambda r: r.gpu_hours) if good else None


def _compare(name: str, ts: RunResult, results: list[RunResult]) -> None:
    for kind in ("global", "hindsight"):
        best = _cheapest(results, kind)
        if best is None:
            print(f"[{name}] no baseline reached 99% with its {kind} setting")
            continue
        margin = 1 - ts.gpu_hours / best.gpu_hours
        verdict = "fewer" if margin > 0 else "more"
        print(
            f"[{name}] cheapest baseline at >= 99% ({kind} settings, static included): "
            f"{best.policy} ({best.config}) {best.slo_attainment:.2%}, {best.gpu_hours:.2f} "
            f"GPU-h; tokenscale {ts.slo_attainment:.2%}, {ts.gpu_hours:.2f} GPU-h: "
            f"{abs(margin):.1%} {verdict}"
        )


def _figures(
    name: str, results: list[RunResult], scenario: Scenario, trace: Trace, wall: float
) -> list[str]:
    ts = next(r for r in results if r.policy == "tokenscale" and r.config == "defaults")
    bound = lower_bound(scenario, trace)
    fails: list[str] = []
    print(f"[{name}] tokenscale attainment {ts.slo_attainment:.2%} (target >= 99%)")
    if ts.slo_attainment < ATTAINMENT:
        fails.append(f"{name}: attainment {ts.slo_attainment:.2%} < 99%")
    at99 = bound.gpu_hours(ATTAINMENT)
    print(
        f"[{name}] lower bound at 99.0%: {at99:.2f} GPU-h; tokenscale {ts.gpu_hours:.2f} "
        f"({ts.gpu_hours / at99:.2f}x the bound)"
    )
    under = [
        r
        for r in results
        if r.policy != BOUND and r.gpu_hours < bound.gpu_hours(r.slo_attainment) - 1e-9
    ]
    print(f"[{name}] runs under the lower bound: {len(under)} (target 0)")
    fails += [
        f"{name}: {r.policy} ({r.config}) {r.gpu_hours:.2f} GPU-h at {r.slo_attainment:.2%} is "
        f"under the bound's {bound.gpu_hours(r.slo_attainment):.2f}: a bug in the bound"
        for r in under
    ]
    _compare(name, ts, results)
    speed = trace.duration / wall
    print(f"[{name}] replay speed {speed:.0f}x real time per policy run (target >= {SPEEDUP:.0f}x)")
    if speed < SPEEDUP:
        fails.append(f"{name}: replay {speed:.0f}x < {SPEEDUP:.0f}x")
    return fails


def _on_off(name: str, on: RunResult, off: RunResult) -> str:
    saved = 1 - on.gpu_hours / off.gpu_hours
    return (
        f"[{name}] batch tuning on: {on.slo_attainment:.2%}, {on.gpu_hours:.2f} GPU-h; "
        f"off (static cap): {off.slo_attainment:.2%}, {off.gpu_hours:.2f} GPU-h; "
        f"on uses {saved:.1%} fewer GPU-hours"
    )


def _standard(args: argparse.Namespace, scenario: Scenario) -> list[tuple[str, Trace | None]]:
    azure = Path(args.azure_trace) if args.azure_trace else default_azure_trace()
    runs: list[tuple[str, Trace | None]] = [("embedded", default_workload(args.seed))]
    if azure.exists():
        runs.append(("azure-conv x6", load(azure).scaled(6.0, None, scenario.max_model_len)))
    else:
        # Not a pass: a target that was not checked is not met (CI has the trace beside the
        # checkout; a leg silently dropped there once let the check exit 0).
        runs.append(("azure-conv x6", None))
    return runs


def _batch_scenario(scenario: Scenario, seed: int, progress: bool) -> list[str]:
    """Long answers to short prompts: the live cap rises past the static one, so the same
    attainment takes fewer replicas (docs/benchmarks.md, "Batch tuning")."""
    trace = long_output_workload(seed).scaled(1.0, None, scenario.max_model_len)
    results = run_suite(scenario, trace, ["tokenscale"], True, progress)
    print(report.table(results))
    on, off = results[:2]
    print(_on_off("long-output", on, off))
    fails = []
    if on.slo_attainment < ATTAINMENT:
        fails.append(f"long-output: attainment {on.slo_attainment:.2%} < 99%")
    if on.gpu_hours >= off.gpu_hours or on.slo_attainment < off.slo_attainment - 0.001:
        fails.append("long-output: batch tuning does not beat the static cap")
    return fails


def check(args: argparse.Namespace) -> int:
    scenario = scenario_from(args)
    progress = not args.no_progress
    fails: list[str] = []
    for name, trace in _standard(args, scenario):
        if trace is None:
            azure = args.azure_trace or default_azure_trace()
            fails.append(
                f"{name}: Azure trace not found at {azure}; pass --azure-trace PATH or set "
                f"{AZURE_TRACE_ENV}"
            )
            continue
        lower_bound(scenario, trace)  # cached; keep the bound's search out of the timed run
        start = time.perf_counter()
        ts_only = run_suite(scenario, trace, ["tokenscale"], False, False)[:1]
        wall = time.perf_counter() - start
        others = [p for p in ALL_POLICIES if p != "tokenscale"]
        rest = run_suite(scenario, trace, others, False, progress, hindsight=True)
        off_sc = replace(scenario, batch_tuning=False)
        off = run_suite(off_sc, trace, ["tokenscale"], False, False)[:1]
        results = ts_only + off + rest  # the bound's row last
        print(report.table(results))
        fails += _figures(name, results, scenario, trace, wall)
        print(_on_off(name, ts_only[0], off[0]))
    fails += _batch_scenario(scenario, args.seed, progress)
    for f in fails:
        print(f"TARGET MISSED: {f}")
    return 1 if fails else 0

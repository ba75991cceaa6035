"""Builds the policy configurations for a run and runs them: tokenscale (batch tuning on, and
off on request), peak provisioning, and every baseline at its release default (where it has a
default threshold), its global setting and, where searched, its hindsight setting for this
workload (`tuned.py`). The lower bound (`bound.py`) is computed beside them."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from tokenscale.bench import tuned
from tokenscale.bench.baselines import FAMILIES
from tokenscale.bench.bound import LowerBound, lower_bound, warm_lead
from tokenscale.bench.policies import Policy, Static, Tokenscale
from tokenscale.bench.runner import RunResult, simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace

ALL_POLICIES = ("tokenscale", "static", *FAMILIES)
STATIC_SHARE = (1.0, 0.85)


def workload_key(trace: Trace, scenario: Scenario) -> str:
    return f"{trace.name}|{scenario.seed}"


def _baselines(scenario: Scenario, key: str, names: Sequence[str], hindsight: bool) -> list[Policy]:
    lo, hi = scenario.min_replicas, scenario.max_replicas
    out: list[Policy] = []
    for name, fam in FAMILIES.items():
        if name not in names:
            continue
        if fam.default is not None and hindsight:  # overloaded runs: slow, targets only
            p = fam.make(fam.default, "vllm", lo, hi)
            p.config += " (release default)"
            out.append(p)
        glob = tuned.GLOBAL.get(name)
        if glob is not None:
            p = fam.make(glob[0], glob[1], lo, hi)
            p.config += " (global)"
            out.append(p)
        mine = tuned.HINDSIGHT.get((key, name)) if hindsight else None
        if mine is not None:
            p = fam.make(mine[0], mine[1], lo, hi)
            p.config += " (hindsight)"
            out.append(p)
    return out


def policies(
    scenario: Scenario,
    trace: Trace,
    names: Sequence[str],
    batch_off: bool,
    hindsight: bool = False,
) -> tuple[list[Policy], int, LowerBound]:
    """Every configuration to run, the warm replica count all of them start with, the bound."""
    bound = lower_bound(scenario, trace)
    initial = bound.warm_start(warm_lead(scenario))
    peak = max(bound.minute_needs())
    out: list[Policy] = []
    if "tokenscale" in names:
        out.append(Tokenscale(scenario))
        if batch_off:
            out.append(Tokenscale(replace(scenario, batch_tuning=False)))
    if "static" in names:
        out += [Static(max(1, round(peak * s)), f"{s:.0%} of peak") for s in STATIC_SHARE]
    out += _baselines(scenario, workload_key(trace, scenario), names, hindsight)
    return out, initial, bound


class Bar:
    """Progress on stderr: a bar redrawn in place on a terminal (only when its text changes), one
    line per finished run otherwise, so a log file gets a line per policy, not thousands."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.enabled = total, 0, enabled and total > 0
        self.live = sys.stderr.isatty()
        self.shown = ""

    def update(self, label: str, frac: float) -> None:
        if not (self.enabled and self.live):
            return
        share = (self.done + frac) / self.total
        filled = int(30 * share)
        text = f"[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} {label[:40]:<40}"
        if text != self.shown:
            sys.stderr.write("\r" + text)
            sys.stderr.flush()
            self.shown = text

    def finished(self, label: str, seconds: float) -> None:
        self.done += 1
        if self.enabled and not self.live:
            sys.stderr.write(f"[{self.done}/{self.total}] {label} ({seconds:.1f} s)\n")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self.live:
            sys.stderr.write("\n")


def run_configs(
    scenario: Scenario, trace: Trace, configs: Sequence[Policy], initial: int, progress: bool
) -> list[RunResult]:
    bar = Bar(len(configs), progress)
    results: list[RunResult] = []
    for p in configs:
        if isinstance(p, Tokenscale) and p.config != "defaults":
            sc = replace(scenario, batch_tuning=False)
        else:
            sc = scenario
        label = f"{p.name} {p.config}"

        def tick(frac: float, label: str = label) -> None:
            bar.update(label, frac)

        started = time.monotonic()
        results.append(simulate(trace, sc, p, initial, tick))
        bar.finished(label, time.monotonic() - started)
    bar.finish()
    return results


BOUND_CURVE = (0.95, 0.97, 0.98, 0.985, 0.99, 0.9925, 0.995, 0.9975, 0.999)


def bound_row(bound: LowerBound, attainment: float = 0.99) -> RunResult:
    """The lower bound as a table row: GPU-hours at `attainment`, the curve for the plot."""
    nan = float("nan")  # latencies: the bound serves no request of its own
    return RunResult(
        policy="lower bound",
        config=f"at {attainment:.1%}",
        slo_attainment=attainment,
        gpu_hours=bound.gpu_hours(attainment),
        ttft_p50_s=nan,
        ttft_p95_s=nan,
        ttft_p99_s=nan,
        itl_p95_s=nan,
        scale_events=0,
        rejected=0,
        curve=[(a, bound.gpu_hours(a)) for a in BOUND_CURVE],
    )


def run_suite(
    scenario: Scenario,
    trace: Trace,
    names: Sequence[str] = ALL_POLICIES,
    batch_off: bool = False,
    progress: bool = True,
    hindsight: bool = False,
) -> list[RunResult]:
    """Run every configuration; the last row is the lower bound at 99.0%. Release defaults and
    hindsight settings only with `hindsight` (the targets run them; the demo keeps to the
    global settings, which keeps `make demo` under 3 minutes on one core)."""
    configs, initial, bound = policies(scenario, trace, names, batch_off, hindsight)
    return [*run_configs(scenario, trace, configs, initial, progress), bound_row(bound)]

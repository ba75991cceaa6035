"""Builds the policy configurations for a run (baselines swept over their main threshold) and
runs them, oracle included."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from tokenscale.bench.oracle import Oracle, calibrate, minute_needs
from tokenscale.bench.policies import Apa, HpaQueue, Kpa, Policy, Static, Tokenscale
from tokenscale.bench.runner import RunResult, simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace

ALL_POLICIES = ("tokenscale", "static", "hpa-queue", "kpa", "apa", "oracle")
HPA_THRESHOLDS = (1.0, 5.0, 20.0)
KPA_TARGETS = (8.0, 16.0, 32.0)
APA_TARGETS = (8.0, 16.0, 32.0)
ORACLE_HEADROOM = (1.0, 0.9, 0.8)
STATIC_SHARE = (1.0, 0.85)


def policies(
    scenario: Scenario, trace: Trace, names: Sequence[str], batch_off: bool
) -> tuple[list[Policy], int]:
    """Every configuration to run, and the warm replica count all of them start with."""
    cal = calibrate(scenario, trace)
    needs = {h: minute_needs(trace, cal, h) for h in ORACLE_HEADROOM}
    initial = needs[1.0][0]
    peak = max(needs[1.0])
    lo, hi = scenario.min_replicas, scenario.max_replicas
    out: list[Policy] = []
    if "tokenscale" in names:
        out.append(Tokenscale(scenario))
        if batch_off:
            out.append(Tokenscale(replace(scenario, batch_tuning=False)))
    if "static" in names:
        out += [Static(max(1, round(peak * s)), f"{s:.0%} of peak") for s in STATIC_SHARE]
    if "hpa-queue" in names:
        out += [HpaQueue(t, lo, hi) for t in HPA_THRESHOLDS]
    if "kpa" in names:
        out += [Kpa(t, lo, hi) for t in KPA_TARGETS]
    if "apa" in names:
        out += [Apa(t, lo, hi) for t in APA_TARGETS]
    if "oracle" in names:
        out += [Oracle(scenario, needs[h], cal.cap, h) for h in ORACLE_HEADROOM]
    return out, initial


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


def run_suite(
    scenario: Scenario,
    trace: Trace,
    names: Sequence[str] = ALL_POLICIES,
    batch_off: bool = False,
    progress: bool = True,
) -> list[RunResult]:
    configs, initial = policies(scenario, trace, names, batch_off)
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

"""The named workload sets. Constants of `decide()` (`domain/scaling_constants.py`) and the
baselines' global settings may be chosen on the TRAINING set only; the VALIDATION set is never
used to choose anything and is reported separately (docs/benchmarks.md says which set and how
many seeds each claim rests on).

The training set is, honestly, what the constants were already chosen on: the embedded day with
seed 1, the Azure conversation trace x6 and the long-output day with seeds 1 and 3 (the burst
margin). Everything else is validation: other seeds of the embedded day, the Azure trace at x4
and x8, and the synthetic shapes of `shapes.py`. A seed draws a synthetic trace; for the Azure
trace it draws the copies' jitter and the balancer's choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tokenscale.bench.scenario import Scenario
from tokenscale.bench.shapes import SHAPES
from tokenscale.bench.traces import Trace, default_azure_trace, load
from tokenscale.bench.workload import default_workload, long_output_workload


@dataclass(frozen=True)
class Workload:
    name: str
    make: Callable[[int], Trace]  # seed -> trace
    seeds: tuple[int, ...]

    def trace(self, scenario: Scenario, seed: int) -> Trace:
        return self.make(seed).scaled(1.0, None, scenario.max_model_len)

    def scenario(self, base: Scenario, seed: int) -> Scenario:
        return replace(base, seed=seed)


def _azure(scale: float, path: Path | None) -> Callable[[int], Trace]:
    def make(seed: int) -> Trace:
        return load(path or default_azure_trace()).scaled(scale, seed=0 if seed == 1 else seed)

    return make


def _has_azure(path: Path | None) -> bool:
    return (path or default_azure_trace()).exists()


def training(azure: Path | None = None) -> list[Workload]:
    out = [
        Workload("embedded", default_workload, (1,)),
        Workload("long-output", long_output_workload, (1, 3)),
    ]
    if _has_azure(azure):
        out.insert(1, Workload("azure-conv x6", _azure(6.0, azure), (1,)))
    return out


def validation(azure: Path | None = None, seeds: int = 5) -> list[Workload]:
    other = tuple(range(2, 2 + seeds))
    out = [Workload("embedded", default_workload, other)]
    if _has_azure(azure):
        out += [
            Workload(f"azure-conv x{k:g}", _azure(k, azure), tuple(range(1, 1 + seeds)))
            for k in (4.0, 8.0)
        ]
    out += [Workload(name, f, tuple(range(1, 1 + seeds))) for name, f in SHAPES.items()]
    return out

"""The named workload sets. Constants of `decide()` and the baselines' global settings may be
chosen on the TRAINING set only; the VALIDATION set is never used to choose anything and is
reported separately (docs/benchmarks.md says which set and how many seeds each claim rests on).

The training set is, honestly, what the constants were already chosen on: the embedded day with
seed 1, the Azure conversation trace x6 and the long-output day with seed 1 (and its seed 3,
used for the burst margin). Everything else is validation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenscale.bench.scenario import Scenario
from tokenscale.bench.shapes import SHAPES
from tokenscale.bench.traces import Trace, default_azure_trace, load
from tokenscale.bench.workload import default_workload, long_output_workload


@dataclass(frozen=True)
class Workload:
    name: str
    make: Callable[[], Trace]

    def trace(self, scenario: Scenario) -> Trace:
        return self.make().scaled(1.0, None, scenario.max_model_len)


def _azure(scale: float, path: Path | None) -> Callable[[], Trace]:
    def make() -> Trace:
        return load(path or default_azure_trace()).scaled(scale)

    return make


def training(azure: Path | None = None) -> list[Workload]:
    out = [
        Workload("embedded seed 1", lambda: default_workload(1)),
        Workload("long-output seed 1", lambda: long_output_workload(1)),
    ]
    if (azure or default_azure_trace()).exists():
        out.insert(1, Workload("azure-conv x6", _azure(6.0, azure)))
    return out


def validation(azure: Path | None = None, seeds: int = 5) -> list[Workload]:
    out = [
        Workload(f"embedded seed {s}", lambda s=s: default_workload(s)) for s in range(2, 2 + seeds)
    ]
    if (azure or default_azure_trace()).exists():
        out += [Workload(f"azure-conv x{k:g}", _azure(k, azure)) for k in (4.0, 8.0)]
    out += [Workload(name, lambda f=f: f(11)) for name, f in SHAPES.items()]
    return out

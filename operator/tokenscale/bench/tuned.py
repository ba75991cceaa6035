"""The baselines' searched settings (threshold, cap option), written from the output of
`python -m tokenscale.bench.tune` (docs/benchmarks.md gives the command and the date).

GLOBAL     one setting per baseline: the cheapest reaching 99% on every training workload
           (`sets.training`); None where no setting reached 99% on all of them.
HINDSIGHT  per (workload key, baseline): the cheapest at >= 99% on that workload alone, tuned
           with hindsight (the strongest that baseline can be there). Workload key:
           "<trace name>|<seed>".
"""

from __future__ import annotations

GLOBAL: dict[str, tuple[float, str] | None] = {}
HINDSIGHT: dict[tuple[str, str], tuple[float, str]] = {}

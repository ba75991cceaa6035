"""The operator at scale (e2e/bench_scale.py): 300 InferenceServices with Prometheus running.
Queries per tick stay constant from 10 to 300 services and agree with Prometheus's own count of
the queries it answered. The speed targets (a tick under 2 s, RSS under 250 MB, a cold reconcile
of all 300 under 60 s) are recorded here and checked by `python -m e2e.bench_scale`, not asserted:
they are figures of the machine's load at the moment, not of correctness."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from e2e import bench_scale
from e2e.autoscale.helpers import record_result
from e2e.harness import Cluster


@pytest.mark.timeout(900)
def test_operator_handles_300_services(cluster: Cluster, tmp_path: Path) -> None:
    result = bench_scale.run([10, 100, 300], tmp_path)
    record_result(
        "scale",
        {**asdict(result), "targets": bench_scale.TARGETS, "target_misses": result.target_misses()},
    )
    assert not result.invariant_failures(), result.invariant_failures()
    assert {s.queries_per_tick for s in result.stages} == {5.0}
    assert result.cold_reconcile_s is not None, "the cold start did not reconcile every service"

"""The operator at scale (e2e/bench_scale.py): 300 InferenceServices with Prometheus running.
Queries per tick stay constant from 10 to 300 services, one tick for all 300 takes under 2 s,
the operator stays under 250 MB RSS, and a cold start reconciles all 300 in under 60 s."""

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
        {**asdict(result), "targets": bench_scale.TARGETS, "failures": result.failures()},
    )
    assert not result.failures(), result.failures()
    assert {s.queries_per_tick for s in result.stages} == {5.0}

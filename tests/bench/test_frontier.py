"""The attainment/GPU-hours plot reads what tune writes: searched points, sweep, bound."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tokenscale.bench.frontier import curves, main

TUNE = {
    "set": "training",
    "workloads": {
        "embedded": {
            "key": "embedded-day|1",
            "families": [
                {
                    "family": "kpa",
                    # threshold, cap, attainment, GPU-h, stopped early
                    "points": [
                        [16.0, "vllm", 0.996, 17.0, False],
                        [32.0, "vllm", 0.97, 14.0, True],
                        [24.0, "vllm", 0.994, 15.5, False],
                        [28.0, "vllm", 0.984, 15.0, False],
                    ],
                }
            ],
        }
    },
}
SWEEP = [
    {
        "workload": "embedded",
        "points": [[0.8, 0.995, 15.2], [1.0, 0.985, 14.4]],
        "bound_curve": [[0.99, 10.5], [0.999, math.inf]],
    }
]


def test_curves_keep_whole_runs_cheapest_first_and_finite_bound_points() -> None:
    got = curves(TUNE, SWEEP)["embedded"]
    assert got["kpa"] == [(0.984, 15.0), (0.994, 15.5), (0.996, 17.0)]  # the stopped run is out
    assert got["tokenscale"] == [(0.985, 14.4), (0.995, 15.2)]
    assert got["lower bound"] == [(0.99, 10.5)]


def test_the_command_writes_one_png_per_workload(tmp_path: Path) -> None:
    tune, sweep = tmp_path / "tune.json", tmp_path / "sweep.json"
    tune.write_text(json.dumps(TUNE))
    sweep.write_text(json.dumps(SWEEP))
    assert main(["--tune", str(tune), "--sweep", str(sweep), "--out-dir", str(tmp_path)]) == 0
    png = tmp_path / "frontier-embedded.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

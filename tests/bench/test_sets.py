"""The training and validation sets, the synthetic shapes, and the seed statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tokenscale.bench import evaluate
from tokenscale.bench.evaluate import interval, table
from tokenscale.bench.sets import training, validation
from tokenscale.bench.shapes import SHAPES


def test_no_workload_and_seed_is_in_both_sets() -> None:
    train = {(w.name, s) for w in training() for s in w.seeds}
    valid = {(w.name, s) for w in validation() for s in w.seeds}
    assert train and valid and not train & valid
    assert all(len(w.seeds) >= 5 for w in validation())
    assert {"flash-crowd", "on-off", "steep-ramp", "long-prompt", "prefill-heavy"} <= {
        w.name for w in validation()
    }


def per_minute(name: str) -> np.ndarray:
    t = SHAPES[name](1)
    return np.bincount((t.arrival // 60).astype(np.int64), minlength=60) / 60.0


def test_rate_shapes() -> None:
    flash = per_minute("flash-crowd")
    assert flash[31] > 4 * flash[10]  # 5x for three minutes from minute 30
    on_off = per_minute("on-off")
    assert on_off[2] > 4 * on_off[7]
    ramp = per_minute("steep-ramp")
    assert ramp[25] > 5 * ramp[5]


def test_token_shapes() -> None:
    ctx = SHAPES["long-context"](1)
    assert ctx.prompt.min() >= 10_000
    pre = SHAPES["prefill-heavy"](1)
    assert np.median(pre.prompt) > 1500 and np.median(pre.output) < 40
    assert np.median(SHAPES["long-prompt"](1).prompt) > 2500


def test_interval_is_students_t() -> None:
    mean, half = interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd 1.581, t(0.975, 4) 2.776: 2.776 x 1.581 / sqrt(5) = 1.963
    assert mean == 3.0 and half == pytest.approx(1.963, abs=1e-3)
    assert math.isnan(interval([2.0])[1])
    # a bound no replica count reaches (inf) in one seed: the mean says so, no interval
    mean, half = interval([5.0, math.inf])
    assert math.isinf(mean) and math.isnan(half)


def test_table_reports_mean_interval_and_bound_ratio() -> None:
    done = [
        {
            "workload": "w",
            "seed": s,
            "bound_at_99": 5.0,
            "infeasible_share": 0.25,
            "runs": [
                {
                    "policy": "tokenscale",
                    "config": "defaults",
                    "slo_attainment": a,
                    "slo_attainment_feasible": a / 0.75,
                    "gpu_hours": g,
                }
            ],
        }
        for s, a, g in ((1, 0.72, 9.0), (2, 0.70, 11.0))
    ]
    text = table(done)
    row = "| w | 2 | tokenscale (defaults) | 71.00% ± 12.71% | 94.67% ± 16.94% | 10.00 ± 12.71 |"
    assert row + " 0/2 | 2.00x |" in text, text
    assert "lower bound at 99.0% (infeasible: 25.0%)" in text


def _row_or_stop(job: evaluate.Job) -> dict[str, object]:
    """A stand-in for a job: the first seed finishes, the second stops the run."""
    if job.seed > 2:  # the embedded day's validation seeds are 2, 3, ...
        raise RuntimeError("stopped")
    return {
        "workload": "embedded",
        "seed": job.seed,
        "requests": 1,
        "infeasible_share": 0.0,
        "bound_at_99": 1.0,
        "runs": [],
    }


def test_a_stopped_evaluation_keeps_the_jobs_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate, "_job", _row_or_stop)
    out = tmp_path / "validation.json"
    argv = ["--only", "embedded", "--seeds", "2", "--jobs", "1", "--json", str(out)]
    with pytest.raises(RuntimeError, match="stopped"):
        evaluate.main(argv)
    kept = json.loads(out.read_text())
    assert [row["seed"] for row in kept] == [2]

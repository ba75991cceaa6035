"""A short scenario end to end: determinism, tokenscale meeting the SLO, JSON shape."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tokenscale.bench.cli import main
from tokenscale.bench.policies import Static, Tokenscale
from tokenscale.bench.report import plotted
from tokenscale.bench.runner import RunResult, simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.suite import Bar
from tokenscale.bench.workload import default_workload, long_output_workload

SC = Scenario()
TRACE = default_workload(7).scaled(1.0, duration=420, max_tokens=SC.max_model_len)


def test_same_seed_same_numbers() -> None:
    a = simulate(TRACE, SC, Tokenscale(SC), 3).row()
    b = simulate(TRACE, SC, Tokenscale(SC), 3).row()
    assert a == b


def test_tokenscale_meets_the_slo_on_a_short_scenario() -> None:
    r = simulate(TRACE, SC, Tokenscale(SC), 3)
    assert r.slo_attainment >= 0.97, r.row()
    assert r.rejected == 0


def test_underprovisioned_static_fails_and_costs_less() -> None:
    small = simulate(TRACE, SC, Static(1), 1)
    ts = simulate(TRACE, SC, Tokenscale(SC), 3)
    assert small.slo_attainment < ts.slo_attainment
    assert small.gpu_hours < ts.gpu_hours


def test_batch_tuning_off_keeps_the_static_cap_and_on_lets_it_rise() -> None:
    # Long answers to short prompts (about 850 tokens a request): the KV room and the ITL
    # objective allow the engine's 256, twice the plan's static 120.
    trace = long_output_workload(1).scaled(1.0, duration=600, max_tokens=SC.max_model_len)
    off_sc = replace(SC, batch_tuning=False)
    off = simulate(trace, off_sc, Tokenscale(off_sc), 2)
    on = simulate(trace, SC, Tokenscale(SC), 2)
    static = SC.plan.max_concurrency
    assert set(off.caps) == {static} and max(on.caps) > static


def test_cli_json_shape(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    rc = main(
        [
            "--duration",
            "240",
            "--policies",
            "tokenscale,static",
            "--no-progress",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert {"model", "gpu", "slo_ttft_s"} <= set(doc["scenario"])
    # The standard plan's budget: the ITL objective's, not vLLM's 8192.
    budget = (
        doc["scenario"]["max_num_batched_tokens"],
        doc["scenario"]["max_num_batched_tokens_source"],
    )
    assert budget == (531, "itlObjective")
    keys = {
        "policy",
        "config",
        "slo_attainment",
        "slo_attainment_feasible",
        "infeasible_share",
        "gpu_hours",
        "ttft_p50_s",
        "ttft_p95_s",
        "ttft_p99_s",
        "itl_p95_s",
        "scale_events",
        "rejected",
        "timed_out",
        "refused_429",
    }
    assert doc["results"] and all(set(r) == keys for r in doc["results"])
    assert {r["policy"] for r in doc["results"]} == {"tokenscale", "static", "lower bound"}


def test_cli_bad_trace_is_a_clear_error(tmp_path: Path, capsys: object) -> None:
    f = tmp_path / "t.csv"
    f.write_text("nope\n")
    assert main(["--trace", str(f), "--no-progress"]) == 4  # bad input file


def test_plot_keeps_tokenscale_and_the_cheapest_passing_config_per_policy() -> None:
    def run(policy: str, config: str, att: float, gpu_h: float) -> RunResult:
        return RunResult(policy, config, att, gpu_h, 0.1, 0.2, 0.3, 0.03, 1, 0)

    results = [
        run("tokenscale", "defaults", 0.995, 15.0),
        run("tokenscale", "batch tuning off", 0.995, 15.0),
        run("kpa", "8", 0.999, 36.0),
        run("kpa", "16", 0.998, 21.0),
        run("kpa", "32", 0.98, 14.0),
        run("hpa-queue", "1", 0.72, 72.0),
        run("hpa-queue", "5", 0.79, 73.0),
    ]
    picked = [(r.policy, r.config) for r in plotted(results)]
    assert picked == [
        ("tokenscale", "defaults"),
        ("tokenscale", "batch tuning off"),
        ("kpa", "16"),
        ("hpa-queue", "5"),
    ]


def test_progress_in_a_log_is_one_line_per_run(capsys: pytest.CaptureFixture[str]) -> None:
    # stderr is not a terminal under capsys: no carriage-return redraws, a line per finished run.
    bar = Bar(2)
    for label in ("static 3", "kpa 16"):
        for i in range(1000):
            bar.update(label, i / 1000)
        bar.finished(label, 1.25)
    bar.finish()
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == ["[1/2] static 3 (1.2 s)", "[2/2] kpa 16 (1.2 s)"]


def test_frontier_draws_the_bound_curve_at_its_attainments() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenscale.bench.report import _frontier

    bound = RunResult("lower bound", "at 99.0%", 0.99, 10.0, 0, 0, 0, 0, 0, 0)
    bound.curve = [(0.98, 9.0), (0.99, 10.0)]
    fig, ax = plt.subplots()
    _frontier(ax, [RunResult("kpa", "24", 0.995, 16.0, 0.1, 0.2, 0.3, 0.03, 1, 0), bound])
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["lower bound"].get_xdata()) == [9.0, 10.0]
    assert list(lines["lower bound"].get_ydata()) == pytest.approx([98.0, 99.0])
    plt.close(fig)

"""The live demo's lines and summary (e2e/demo/view.py) and its terminal (e2e/demo/terminal.py),
checked with made-up samples: no cluster, no clock."""

from __future__ import annotations

import io

import pytest
from e2e.demo.terminal import CLEAR_LINE, Display
from e2e.demo.view import (
    Frame,
    Objective,
    Request,
    decision_kind,
    decision_line,
    gpu_minutes,
    status_line,
    summarize,
    summary_lines,
)

OBJECTIVE = Objective(ttft_s=1.0, itl_s=0.1, percentile=95, gpus_per_replica=1)


def decision(
    before: int, after: int, applied: bool = True, reason: str = "why"
) -> dict[str, object]:
    return {
        "time": "2026-11-29T19:00:00Z",
        "previousReplicas": before,
        "replicas": after,
        "concurrencyCap": 4,
        "applied": applied,
        "reason": reason,
    }


def test_status_line_shows_every_figure_against_the_objective() -> None:
    frame = Frame(
        t=95.4,
        phase="burst",
        offered_rps=3.0,
        replicas=4,
        ready=3,
        desired=5,
        cap=4,
        arrival_rps=2.84,
        ttft_s=1.73,
        itl_s=0.071,
    )
    assert status_line(frame, OBJECTIVE) == (
        "t=  95s burst  load 3/s   seen 2.8/s  replicas 3/4 want 5  cap 4   "
        "TTFT p95 1.73s/1.00s MISS  ITL p95 71ms/100ms ok"
    )


def test_status_line_before_any_metrics_says_nothing_is_known() -> None:
    line = status_line(Frame(t=3, phase="calm", offered_rps=0.75, replicas=1, ready=1), OBJECTIVE)
    assert "seen -" in line and "want -" in line and "TTFT p95 -/1.00s" in line
    assert "MISS" not in line and " ok" not in line


@pytest.mark.parametrize(
    ("before", "after", "applied", "kind"),
    [
        (1, 4, True, "scale-up"),
        (4, 2, True, "scale-down"),
        (2, 2, True, "cap"),
        (2, 2, False, "hold"),
    ],
)
def test_decision_kind(before: int, after: int, applied: bool, kind: str) -> None:
    assert decision_kind(decision(before, after, applied)) == kind


def test_decision_line_quotes_the_operators_reason() -> None:
    reason = "TTFT p95 4.37 s > 1.00 s with 6 queued; 1 -> 4 replicas"
    assert decision_line(52.2, decision(1, 4, reason=reason)) == (
        f"t=  52s >> scale-up 1 -> 4 replicas, cap 4: {reason}"
    )
    assert "(not applied)" in decision_line(1, decision(1, 3, applied=False))


def frames(*replicas_at: tuple[float, int]) -> list[Frame]:
    return [Frame(t=t, phase="p", offered_rps=1, replicas=r, ready=r) for t, r in replicas_at]


def test_gpu_minutes_hold_each_count_until_the_next_frame() -> None:
    # 2 replicas for 30 s, then 4 for 30 s: 180 GPU-seconds = 3 GPU-minutes (x2 GPUs each: 6).
    run = frames((0, 2), (30, 4), (60, 1))
    assert gpu_minutes(run, 1) == pytest.approx(3.0)
    assert gpu_minutes(run, 2) == pytest.approx(6.0)
    assert gpu_minutes(run[:1], 1) == 0.0


def test_summary_counts_requests_within_both_objectives_and_each_kind_of_decision() -> None:
    requests = [
        Request("calm", True, 0.3, 0.07),  # within
        Request("burst", True, 1.4, 0.07),  # TTFT over
        Request("burst", True, 0.5, 0.2),  # ITL over
        Request("burst", False, 0.2, 0.07),  # incomplete
        Request("calm", True, 0.9, None),  # one token: no gap, TTFT within
    ]
    decisions = [
        decision(1, 4),
        decision(4, 5),
        decision(5, 5),
        decision(5, 2),
        decision(2, 2, False),
        decision(2, 2, False),  # holds are not counted as changes
    ]
    summary = summarize(frames((0, 1), (60, 5), (120, 1)), requests, decisions, OBJECTIVE)
    assert (summary.requests, summary.complete, summary.within_slo) == (5, 4, 2)
    assert summary.attainment == pytest.approx(0.4)
    assert (summary.scale_ups, summary.scale_downs, summary.cap_changes) == (2, 1, 1)
    assert summary.peak_replicas == 5
    assert summary.gpu_minutes == pytest.approx((1 * 60 + 5 * 60) / 60)
    assert summary.static_gpu_minutes == pytest.approx(5 * 120 / 60)
    text = "\n".join(summary_lines(summary, OBJECTIVE))
    assert "40.0% of 5 requests" in text
    assert "GPU-minutes  6.0, 40% less than 5 replicas throughout (10.0)" in text
    assert "2 scale-up, 1 scale-down, 1 cap change" in text


def test_summary_of_nothing_is_zero_not_an_error() -> None:
    summary = summarize([], [], [], OBJECTIVE)
    assert summary.attainment == 0.0 and summary.gpu_minutes == 0.0
    assert "GPU-minutes  0.0" in "\n".join(summary_lines(summary, OBJECTIVE))


def test_plain_display_prints_status_every_interval_and_every_event() -> None:
    out = io.StringIO()
    display = Display(out, live=False, every_s=5.0)
    for t in range(12):
        display.status(f"status {t}", float(t))
    display.event("decision")
    assert out.getvalue().splitlines() == ["status 0", "status 5", "status 10", "decision"]
    assert CLEAR_LINE not in out.getvalue()


def test_live_display_redraws_one_line_and_prints_events_above_it() -> None:
    out = io.StringIO()
    display = Display(out, live=True)
    display.status("status 1", 1.0)
    display.status("status 2", 2.0)
    display.event("decision")
    display.status("status 3", 3.0)
    display.close()
    assert out.getvalue() == (
        f"{CLEAR_LINE}status 1{CLEAR_LINE}status 2{CLEAR_LINE}decision\n{CLEAR_LINE}status 3\n"
    )

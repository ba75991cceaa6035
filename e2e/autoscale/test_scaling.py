"""Step load up and down on one service: the scale-up decision and SLO recovery times, no
scale-down while the load holds, and a scale-down only once no recommendation within the hold
stands above it, within the configured rate, to minReplicas, with a request in flight on every
replica that goes and none lost."""

from __future__ import annotations

import itertools
import math
from typing import Any

from e2e.autoscale.conftest import TICK_SECONDS, Scenario
from e2e.autoscale.helpers import (
    client_ttft_recovery,
    decreases,
    epoch,
    incomplete,
    record_result,
    service,
    slo_recovery,
)
from e2e.fleet.loadgen import Phase, summarize
from e2e.harness import wait_for

# One L4 replica at cap 4 serves ~1.75 requests/s of 64 + 32 tokens (2.3 s each): 0.75 req/s
# is light; x4 (3 req/s) needs about three, and a queue builds until they come.
BASE = Phase("base", rate=0.75, prompt_tokens=64, max_tokens=32)
STEP = Phase("step", rate=3.0, prompt_tokens=64, max_tokens=32)
COLD_START_S = 5
STABILIZATION_S = 30


def test_step_load_scales_up_and_recovers_the_slo(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    sc.cluster.apply(service(scaling={"coldStartSeconds": COLD_START_S}), sc.namespace)
    timeline = sc.timeline()
    load = sc.start_load(BASE)
    assert svc.replicas() == 1
    step_at = load.set(STEP)

    # How fast is a figure of the machine at the moment (recorded below and reported in
    # docs/autoscaling-e2e.md); the test asserts that it happens, within bounds far above the
    # idle figures (~15 s and ~40 s) so a loaded machine does not fail it.
    up = wait_for(
        "a scale-up decision",
        lambda: timeline.first(step_at, lambda s: s.replicas > 1),
        timeout=90,
    )
    decision_s = up.at - step_at

    def recovered() -> tuple[bool, float | None] | None:
        missed, at = slo_recovery(timeline.samples, step_at)
        settled = timeline.samples[-1].slo_met == "True" and timeline.samples[-1].at > up.at + 10
        return (missed, at) if (at is not None or (not missed and settled)) else None

    missed, recovered_at = wait_for("SLOMet=True again", recovered, timeout=180)
    recovery_s = (recovered_at - step_at) if recovered_at else 0.0

    # From the SLO's recovery (the backlog drained), hold the load for a full stabilization
    # window. A replica count sized for the backlog may be trimmed, but never below what the
    # load needs: the SLO stays met, and nothing is added back after a trim (no flapping).
    hold_from = recovered_at or (up.at + 2 * TICK_SECONDS)
    hold_until = hold_from + STABILIZATION_S + 2 * TICK_SECONDS
    wait_for("the hold to pass", lambda: timeline.samples[-1].at >= hold_until, timeout=90)
    held = timeline.between(hold_from, hold_until)
    trims = decreases(held)
    assert all(s.slo_met == "True" for s in held), "the SLO broke while the step load held"
    if trims:
        after_trim = [s for s in held if s.at >= trims[0][0]]
        regrown = [s for a, s in itertools.pairwise(after_trim) if s.replicas > a.replicas]
        assert not regrown, f"flapping while the load held: trims {trims}, then up again"
    burst = timeline.since(step_at)
    records = load.stop()
    timeline.stop()
    assert not incomplete(records), summarize(incomplete(records))
    step_records = [r for r in records if r.phase == "step"]
    record_result(
        "step_x4",
        {
            "base_rps": BASE.rate,
            "step_rps": STEP.rate,
            "step_to_decision_s": round(decision_s, 1),
            "peak_replicas": max(s.replicas for s in burst),
            "replicas_held": held[-1].replicas,
            "trimmed_before_recovery": decreases([s for s in burst if s.at < hold_from]),
            "trimmed_while_holding": [f"{b}->{a}" for _t, b, a in trims],
            "slo_missed": missed,
            "step_to_slo_recovered_s": round(recovery_s, 1),
            "client_ttft_over_slo_for_s": client_ttft_recovery(step_records, step_at, 1.0),
            "client_step": summarize(step_records),
        },
    )


# The scale-down scenario. A passed burst holds for min(coldStartSeconds, the stabilization
# window) after the last recommendation above the new count (docs/autoscaling.md). The hold is set
# longer than the metrics window (30 s), so a missing hold shows: without it the first scale-down
# comes as soon as the window forgets the burst (~30-35 s after the drop); with it, not before
# hold - one tick after the drop (the last high recommendation is at most one tick before it).
DOWN_COLD_START_S = 60
DOWN_STABILIZATION_S = 90
DOWN_PEAK = 3
# One stream per replica, each longer than the whole scale-down (2304 tokens at ~68 ms: ~157 s;
# the worst legal first scale-down leaves ~100 s of it, inside the 120 s drain grace), so every
# replica that goes away holds a request when SIGTERM comes: the drain is exercised, not hoped
# for. Nothing new is sent while they run, so the need is the streams alone: 3 in flight at cap 4
# -> 3 / (4 x 0.8) = 0.94 -> one replica, once the 30 s window has forgotten the burst.
DRAIN_STREAM = Phase("low", concurrency=DOWN_PEAK, prompt_tokens=64, max_tokens=2304)


def test_load_drop_scales_down_after_the_window_and_drains(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    doc = service(
        scaling={
            "coldStartSeconds": DOWN_COLD_START_S,
            "scaleDownStabilizationSeconds": DOWN_STABILIZATION_S,
            "maxScaleDownRate": 2.0,
            "maxReplicas": DOWN_PEAK,
        }
    )
    sc.cluster.apply(doc, sc.namespace)
    timeline = sc.timeline()
    high = Phase("high", rate=2.5, prompt_tokens=64, max_tokens=32)
    load = sc.start_load(high)

    def all_serving() -> bool:
        return svc.replicas() == DOWN_PEAK and sc.fleet.backends(svc.name) == DOWN_PEAK

    wait_for(f"{DOWN_PEAK} replicas, all serving", all_serving, timeout=90)
    # The front is round-robin: DOWN_PEAK streams started together land one on each replica.
    drop_at = load.set(DRAIN_STREAM)
    wait_for("the streams to start", lambda: load.streams() >= DOWN_PEAK, timeout=30, every=0.2)
    load.set(Phase("idle"))  # the streams run on; none is sent again when it ends

    def at_min() -> bool:
        return svc.replicas() == 1 and sc.fleet.workers(svc.name) == 1

    wait_for("scale-down to minReplicas", at_min, timeout=DOWN_STABILIZATION_S + 240, every=1)
    records = load.stop()
    timeline.stop()
    downs = [d for d in timeline.history() if d["replicas"] < d["previousReplicas"]]
    assert downs, "no scale-down decision observed"
    hold = min(DOWN_COLD_START_S, DOWN_STABILIZATION_S)
    first_down_s = epoch(downs[0]["time"]) - drop_at
    # Decision times are whole seconds: 1.5 s of slack.
    assert first_down_s >= hold - TICK_SECONDS - 1.5, (
        f"scaled down {first_down_s:.1f} s after the drop, inside the {hold} s passed-burst hold"
    )
    recs = sorted(timeline.recommendations)
    assert any(r >= DOWN_PEAK for _t, r in recs), f"no recommendation at the peak seen: {recs}"
    for d in downs:
        at = epoch(d["time"])
        # Every recommendation younger than the hold counts in full (docs/autoscaling.md): none
        # of them may stand above what the scale-down went to.
        # The decision's time is whole seconds: 1.5 s of slack at each end of the hold.
        younger = [(t, r) for t, r in recs if at - hold + 1.5 < t < at - 1.5 and r > d["replicas"]]
        assert not younger, f"scaled {d['previousReplicas']}->{d['replicas']} at {at:.1f} " + (
            f"within {hold} s of recommendations {younger}"
        )
        floor = math.floor(d["previousReplicas"] / 2.0)
        assert d["replicas"] >= floor, f"{d} exceeds maxScaleDownRate 2"
    # Lost: any request of the low phase (the scale-down) that did not complete, or any request
    # a worker accepted (HTTP 200) that ended truncated. The high phase's 429s are load shedding
    # by a full replica queue before the scale-up, not losses.
    lost = [r for r in incomplete(records) if r.phase == "low" or r.status == 200]
    assert not lost, f"{len(lost)} requests lost or truncated: {lost[:3]}"

    # A removed replica leaves the front at once and is recorded when its drain has ended and its
    # process exited, a moment after its last stream completed.
    def drained() -> list[dict[str, Any]] | None:
        stopped = [w for w in sc.fleet.stopped() if w["service"] == svc.name]
        return stopped if len(stopped) >= DOWN_PEAK - 1 else None

    stopped = wait_for("the removed replicas to drain and exit", drained, timeout=150, every=1)
    assert len(stopped) == DOWN_PEAK - 1, stopped
    assert all(w["exitCode"] == 0 for w in stopped), stopped
    held = [w.get("heldAtSigterm") for w in stopped]
    assert all(h is not None and h >= 1 for h in held), (
        f"a replica went with nothing to drain: {held}"
    )
    record_result(
        "scale_down",
        {
            "peak_replicas": DOWN_PEAK,
            "steps": [f"{d['previousReplicas']}->{d['replicas']}" for d in downs],
            "drop_to_first_scale_down_s": round(first_down_s, 1),
            "drop_to_min_replicas_s": round(epoch(downs[-1]["time"]) - drop_at, 1),
            "requests_in_flight_at_sigterm": sum(h or 0 for h in held),
            "requests": len(records),
            "requests_during_scale_down": sum(1 for r in records if r.phase == "low"),
            "lost": len(lost),
            "shed_429_before_scale_up": sum(1 for r in records if r.status == 429),
        },
    )

"""The loop under faults: Prometheus goes away (metrics unavailable, replicas held, then the loop
resumes), and the operator restarts in the middle of a scale-up (it resumes from the state kept
in status: same cap, same stabilization window, no jump)."""

from __future__ import annotations

import time
from typing import Any

from e2e.autoscale.conftest import TICK_SECONDS, Scenario
from e2e.autoscale.helpers import decreases, epoch, record_result, service
from e2e.fleet.loadgen import Phase
from e2e.harness import wait_for

BASE = Phase("base", rate=0.75, prompt_tokens=64, max_tokens=32)
HIGH = Phase("high", rate=3.0, prompt_tokens=64, max_tokens=32)


def test_prometheus_outage_holds_replicas_then_resumes(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    sc.cluster.apply(service(scaling={"coldStartSeconds": 5}), sc.namespace)
    timeline = sc.timeline()
    load = sc.start_load(BASE)
    assert svc.condition("MetricsAvailable")["status"] == "True"

    sc.prometheus.stop()
    stopped_at = time.time()
    load.set(HIGH)  # with metrics this would scale up; without, replicas must hold

    def unavailable() -> dict[str, Any] | None:
        cond = svc.condition("MetricsAvailable")
        return cond if cond.get("reason") == "PrometheusUnavailable" else None

    # A liveness bound (detection takes one tick when idle; the figure is recorded below).
    cond = wait_for("MetricsAvailable=False", unavailable, timeout=60)
    assert cond["status"] == "False"
    detected_s = time.time() - stopped_at
    held_until = time.time() + 4 * TICK_SECONDS
    wait_for("the outage to last 4 ticks", lambda: time.time() >= held_until, timeout=30)
    during = timeline.between(stopped_at, held_until)
    assert all(s.replicas == 1 for s in during), "replicas moved without metrics"
    assert svc.status().get("desiredReplicas") == 1

    sc.prometheus.start()
    restarted_at = time.time()
    wait_for(
        "MetricsAvailable=True",
        lambda: svc.condition("MetricsAvailable").get("status") == "True",
        timeout=60,
    )
    available_s = time.time() - restarted_at
    wait_for("a scale-up on fresh metrics", lambda: svc.replicas() > 1, timeout=60)
    resumed_s = time.time() - restarted_at
    load.stop()
    record_result(
        "prometheus_outage",
        {
            "stop_to_metrics_unavailable_s": round(detected_s, 1),
            "outage_s": round(restarted_at - stopped_at, 1),
            "replicas_during_outage": sorted({s.replicas for s in during}),
            "restart_to_metrics_available_s": round(available_s, 1),
            "restart_to_scale_up_s": round(resumed_s, 1),
        },
    )


# A cap no fresh start would choose: the seed is the ceiling (maxConcurrency 4).
RESUMED_CAP = 3


def test_operator_restart_mid_scale_resumes_without_a_jump(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    sc.cluster.apply(service(scaling={"coldStartSeconds": 5}), sc.namespace)
    timeline = sc.timeline()
    load = sc.start_load(BASE)
    step_at = load.set(HIGH)
    wait_for("the scale-up to start", lambda: svc.replicas() > 1, timeout=40, every=0.5)

    sc.operator.kill()  # a crash mid-scale: no graceful shutdown
    killed_at = time.time()
    replicas_before = svc.replicas()
    state_before = svc.status().get("autoscaler") or {}
    kept = [tuple(r) for r in state_before.get("recommendations") or []]
    assert kept, f"no stabilization window in status to resume from: {state_before}"
    # The memory a restart must resume from, made distinct from what a fresh start would seed:
    # a cap of 3 (a fresh start seeds the ceiling, 4), changed just now (so it may not move
    # again within the settle period).
    svc.patch_status({"autoscaler": {"concurrencyCap": RESUMED_CAP, "capChangedAt": time.time()}})
    sc.operator.start()
    back_at = time.time()

    def first_state() -> dict[str, Any] | None:
        state = svc.status().get("autoscaler") or {}
        recs = state.get("recommendations") or []
        return state if any(t > back_at for t, _r in recs) else None

    resumed = wait_for("the restarted operator's first tick", first_state, timeout=60)
    newest = max(t for t, _r in resumed["recommendations"])
    first_s = newest - back_at
    window = float(service()["spec"]["scaling"]["scaleDownStabilizationSeconds"])
    # Resumed from status: every recommendation still inside the window at that tick was kept
    # (a fresh start opens the window with its own count alone) ...
    carried = {(t, r) for t, r in kept if newest - t < window}
    assert carried, f"nothing left in the window to carry: {kept} at {newest}"
    now_recs = {tuple(r) for r in resumed["recommendations"]}
    assert carried <= now_recs, f"the stabilization window was lost: {carried - now_recs}"
    # ... and the cap in status, not a re-seeded one.
    assert resumed.get("concurrencyCap") == RESUMED_CAP, resumed
    hold_until = time.time() + 6 * TICK_SECONDS
    wait_for("six more ticks of load", lambda: time.time() >= hold_until, timeout=60)
    records = load.stop()

    # No jump: the count never fell across the restart, and the first decision after it starts
    # from the count at the kill (nothing reset it while the operator was down).
    around = timeline.between(step_at, hold_until)
    assert not decreases(around), f"replicas fell across the restart: {decreases(around)}"
    fresh = [d for d in timeline.history() if epoch(d["time"]) > back_at]
    if fresh:
        assert fresh[0]["previousReplicas"] >= replicas_before, fresh[0]
    assert all(r.complete for r in records if r.status == 200)
    record_result(
        "operator_restart",
        {
            "replicas_at_kill": replicas_before,
            "down_s": round(back_at - killed_at, 1),
            "restart_to_first_tick_s": round(first_s, 1),
            "window_carried": len(carried),
            "cap_resumed": resumed.get("concurrencyCap"),
            "first_decision": (
                f"{fresh[0]['previousReplicas']}->{fresh[0]['replicas']}: {fresh[0]['reason']}"
                if fresh
                else None
            ),
            "replicas_after": svc.replicas(),
        },
    )

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

    cond = wait_for("MetricsAvailable=False", unavailable, timeout=3 * TICK_SECONDS + 5)
    assert cond["status"] == "False"
    detected_s = time.time() - stopped_at
    held_until = time.time() + 4 * TICK_SECONDS
    wait_for("the outage to last 4 ticks", lambda: time.time() >= held_until, timeout=30)
    during = timeline.since(stopped_at)
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


def test_operator_restart_mid_scale_resumes_without_a_jump(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    sc.cluster.apply(service(scaling={"coldStartSeconds": 5}), sc.namespace)
    timeline = sc.timeline()
    load = sc.start_load(BASE)
    step_at = load.set(HIGH)
    wait_for("the scale-up to start", lambda: svc.replicas() > 1, timeout=40, every=0.5)

    before = svc.status()
    replicas_before = svc.replicas()
    state_before = before.get("autoscaler") or {}
    sc.operator.kill()  # a crash mid-scale: no graceful shutdown
    killed_at = time.time()
    sc.operator.start()
    back_at = time.time()

    def fresh_decision() -> dict[str, Any] | None:
        decisions = svc.decisions()
        newest = decisions[-1] if decisions else None
        return newest if newest and epoch(newest["time"]) > back_at else None

    first = wait_for("a decision from the restarted operator", fresh_decision, timeout=60)
    first_s = epoch(first["time"]) - back_at
    hold_until = time.time() + 6 * TICK_SECONDS
    wait_for("six more ticks of load", lambda: time.time() >= hold_until, timeout=60)
    after = svc.status()
    records = load.stop()

    around = timeline.since(step_at)
    assert not decreases(around), f"replicas fell across the restart: {decreases(around)}"
    assert first["previousReplicas"] >= replicas_before, first
    # Resumed from status: the cap was not re-seeded and the stabilization window was kept.
    assert first["concurrencyCap"] == state_before.get("concurrencyCap"), (first, state_before)
    kept = {tuple(r) for r in state_before.get("recommendations") or []}
    now_recs = {tuple(r) for r in (after.get("autoscaler") or {}).get("recommendations") or []}
    carried = {r for r in kept if time.time() - r[0] < 30}
    assert carried <= now_recs or not carried, "the stabilization window was lost on restart"
    # No jump: the restart's own decision moves at most as a live tick would.
    assert first["replicas"] <= max(svc.replicas(), replicas_before) + 4, first
    assert all(r.complete for r in records if r.status == 200)
    record_result(
        "operator_restart",
        {
            "replicas_at_kill": replicas_before,
            "down_s": round(back_at - killed_at, 1),
            "restart_to_first_decision_s": round(first_s, 1),
            "first_decision": f"{first['previousReplicas']}->{first['replicas']}: "
            + first["reason"],
            "cap_kept": first["concurrencyCap"],
            "replicas_after": svc.replicas(),
        },
    )

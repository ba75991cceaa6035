"""Advisory mode: the autoscaler decides and says so (status, Events) but never touches the
replica count."""

from __future__ import annotations

import itertools
import time
from typing import Any

from e2e.autoscale.conftest import TICK_SECONDS, Scenario
from e2e.autoscale.helpers import record_result, service
from e2e.fleet.loadgen import Phase
from e2e.harness import wait_for


def test_advisory_mode_reports_decisions_and_leaves_replicas(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    sc.cluster.apply(service(scaling={"mode": "advisory", "coldStartSeconds": 5}), sc.namespace)
    timeline = sc.timeline()
    load = sc.load(sc.fleet.front(svc.name))
    started = load.start(Phase("high", rate=3.0, prompt_tokens=64, max_tokens=32))

    def recommendation() -> dict[str, Any] | None:
        return next((d for d in svc.decisions() if d["replicas"] > 1 and not d["applied"]), None)

    advice = wait_for("a recommendation above 1 replica", recommendation, timeout=60, every=1)
    advised_s = time.time() - started
    events = wait_for("a Recommendation Event", lambda: svc.events("Recommendation"), timeout=20)
    watch_until = time.time() + 6 * TICK_SECONDS
    wait_for("six more ticks", lambda: time.time() >= watch_until, timeout=60)
    load.stop()
    watched = timeline.between(started, watch_until)
    assert all(s.replicas == 1 for s in watched), "advisory mode scaled"
    assert svc.replicas() == 1
    assert (svc.status().get("desiredReplicas") or 0) > 1
    assert not svc.events("ScaledUp") and not svc.events("ScaledDown")
    # One Event per new recommendation, not one per tick.
    advised = [d["replicas"] for d in timeline.history() if not d["applied"] and d["replicas"] > 1]
    changes = sum(1 for a, b in itertools.pairwise([1, *advised]) if a != b)
    posted = sum(int(e.get("count") or 1) for e in svc.events("Recommendation"))
    assert posted <= changes + 1, f"{posted} Recommendation Events for {changes} changes"
    record_result(
        "advisory",
        {
            "load_to_recommendation_s": round(advised_s, 1),
            "recommendation": f"{advice['previousReplicas']}->{advice['replicas']}: "
            f"{advice['reason']}",
            "recommendation_events": sum(
                int(e.get("count") or 1) for e in svc.events("Recommendation")
            ),
            "first_event": events[0]["message"],
        },
    )

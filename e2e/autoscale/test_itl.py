"""ITL pressure: long answers decoded on replicas 1.5x slower than the operator's latency model
expects (time-scale 1.5: a throttled GPU, a noisy neighbour), so inter-token latency misses its
objective where the model predicts it would not. The operator turns the per-replica batch knob
(the concurrency cap) first, not the replica count, and the new cap reaches every worker's
gateway within seconds.

Why the slow replicas: with the model right, the rate need already sizes replicas for the
ITL-feasible cap, so load the model foresees as too much for the objective adds replicas before
any ITL is observed; that is the replica knob answering, not ITL pressure."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from e2e.autoscale.conftest import Scenario
from e2e.autoscale.helpers import Sample, record_result, service
from e2e.fleet.loadgen import Phase
from e2e.harness import wait_for

CAP_GAUGE = re.compile(r"^tokenscale_gateway_concurrency_cap (\S+)$", re.M)
START_CAP = 12
TIME_SCALE = 1.5
# Three streams of long answers fill 3 of the 12 slots; even at the cap's floor of 8 one
# replica holds them, so no replica has to be added for the load itself.
LONG = Phase("long", concurrency=3, prompt_tokens=1000, max_tokens=256)


def gateway_caps(sc: Scenario, svc: str) -> list[int]:
    caps = []
    for worker in sc.fleet.state().get("workers", {}).values():
        if worker["service"] != svc:
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{worker['port']}/metrics", timeout=5) as r:
            found = CAP_GAUGE.search(r.read().decode())
        caps.append(int(float(found.group(1))) if found else -1)
    return caps


@pytest.mark.time_scale(TIME_SCALE)
def test_itl_pressure_lowers_the_cap_before_adding_replicas(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    doc = service(
        slo={"ttftSeconds": 3.0, "itlSeconds": 0.1},
        scaling={
            "maxReplicas": 4,
            "coldStartSeconds": 5,
            "batch": {"enabled": True, "minConcurrency": 8, "maxConcurrency": START_CAP},
        },
    )
    sc.cluster.apply(doc, sc.namespace)
    timeline = sc.timeline()
    wait_for("the seeded cap", lambda: svc.status().get("plan", {}).get("concurrencyCap"), 60)
    load = sc.load(sc.fleet.front(svc.name))
    started = load.start(LONG)

    def cap_down() -> Sample | None:
        return timeline.first(started, lambda s: s.cap is not None and s.cap < START_CAP)

    lowered = wait_for("the cap to come down", cap_down, timeout=120, every=1)
    assert lowered.cap is not None
    before = timeline.between(started, lowered.at)
    assert all(s.replicas == 1 for s in before), "replicas went up before the cap came down"
    cut = next(d for d in timeline.history() if d["concurrencyCap"] == lowered.cap)
    assert "ITL" in cut["reason"], cut
    assert cut["previousReplicas"] == 1, cut

    # The kubelet-style relay: ConfigMap -> tuning file -> every gateway, within seconds.
    relayed = wait_for(
        "the new cap in every gateway",
        lambda: (caps := gateway_caps(sc, svc.name)) and all(c == lowered.cap for c in caps),
        timeout=60,  # a liveness bound: the relay time itself is a recorded figure (~1-2 s idle)
        every=0.25,
    )
    relay_s = time.time() - lowered.at
    assert relayed
    records = load.stop()
    assert all(r.complete for r in records if r.status == 200)
    record_result(
        "itl_pressure",
        {
            "load": "3 streams x (1000 prompt + 256 output tokens), replicas 1.5x slow",
            "start_cap": START_CAP,
            "cap_after": lowered.cap,
            "load_to_cap_decision_s": round(lowered.at - started, 1),
            "cap_reason": cut["reason"],
            "replicas_at_cap_cut": cut["replicas"],
            "status_to_gateways_s": round(relay_s, 2),
        },
    )

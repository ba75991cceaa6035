"""One load step on real engines: the fleet emulator serves the service's pods with real vLLM (the
CPU build, the tiny Llama model `make setup` builds), each started from the worker config the
operator rendered into its pod, under the `cpu-test` engine profile.

Real vLLM metrics -> real Prometheus -> the operator scales out -> each new replica's real cold
start (vLLM loading, tens of seconds; its pod is not Ready until the startup and readiness probes
pass, as a kubelet reports it) is what the operator waits for, and it keeps the replica while the
load holds (SLOMet's return is recorded: on two cores TTFT p95 sits near the objective at one
replica and two CPU engines slow each other, so when it returns under 1 s is the machine's);
then the load drops, the operator scales in, the removed workers drain and stop
vLLM, and no request is lost. At most two engines run at once (~3 GB and, under load, a core
each: a third on this 2-core machine starved the API server).

The load is closed-loop (a fixed number of streams) and cap-limited: the per-replica batch is
pinned at 3 and each request decodes 300 tokens (1.5 s or more on this CPU), so one replica with
6 streams holds 3 of them in the gateway's queue for a whole request each (TTFT p95 over the 1 s
objective on any machine speed, and a window mean of requests in flight over one replica's
share). With 4 streams the premise was the machine's: scrapes read 0 to 3 requests running
and 0 or 1 queued (the rest of each request's time is the relay and the client reading 300
chunks on a busy 2-core machine), and in one cold CI run TTFT p95 stayed at 0.93 s for the
120 s the test waited, so the operator rightly held one replica.
On a 2-core machine a second CPU engine adds little token throughput, so the test is about
queueing, which extra replicas do remove.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.tools import TINY_MODEL_SPEC

from e2e.autoscale.conftest import Scenario
from e2e.autoscale.helpers import epoch, incomplete, record_result, slo_recovery
from e2e.fleet.loadgen import Phase, summarize
from e2e.harness import wait_for

NAME = "tiny"
MAX_REPLICAS = 2
COLD_START_S = 180
# The scale-down hold is min(coldStartSeconds, this window) after the last recommendation above
# the new count. At 30 s it ended while the second engine was still loading (~110 s), and one
# tick whose gauges read fewer streams in flight (3 instead of 4) removed the starting replica.
# 120 s outlasts the load on an idle machine; on a busy one (a cold CI run: the second engine
# loaded for more than 120 s) the window's mean read 1.3 in flight and removed the starting
# replica while TTFT was over the objective. decide() now holds a scale-down while the objective
# is missed and a replica is still starting, which this scenario checks ("replicas never went
# down while the step held").
STABILIZATION_S = 120
# How long the step load holds once both engines serve, when SLOMet does not come back sooner:
# past the 120 s hold, so a scale-in on a low reading would show, and two metrics windows.
HELD_AFTER_SERVING_S = 150
# A prompt of 32 words stays far inside the tiny model's 512-token context with 300 out.
BASE = Phase("base", concurrency=1, prompt_tokens=32, max_tokens=300)
STEP = Phase("step", concurrency=6, prompt_tokens=32, max_tokens=300)
LOW = Phase("low", concurrency=1, prompt_tokens=32, max_tokens=300)

TINY_SERVICE: dict[str, Any] = {
    "apiVersion": "tokenscale.io/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": NAME},
    "spec": {
        "model": TINY_MODEL_SPEC,
        "resources": {"gpu": "l4-24gb", "cpu": "1", "memory": "2Gi"},
        "slo": {"ttftSeconds": 1.0, "itlSeconds": 0.2, "percentile": 95},
        "scaling": {
            "minReplicas": 1,
            "maxReplicas": MAX_REPLICAS,
            "mode": "auto",
            "coldStartSeconds": COLD_START_S,
            "scaleDownStabilizationSeconds": STABILIZATION_S,
            "maxScaleDownRate": 2.0,
            "batch": {"enabled": True, "minConcurrency": 3, "maxConcurrency": 3},
        },
    },
}

# The claim the pods mount: a PersistentVolume bound to it by name (no provisioner runs here).
# The fleet emulator maps the claim to the node's models directory, where the tiny model is.
MODELS_CLAIM = """
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {namespace}-models}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {{namespace: {namespace}, name: models}}
  hostPath: {{path: /models}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: models, namespace: {namespace}}}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: {namespace}-models
  resources: {{requests: {{storage: 1Gi}}}}
"""


@pytest.mark.engine("vllm")
@pytest.mark.timeout(1500)
def test_real_vllm_engines_scale_out_on_queueing_and_back_in_without_loss(
    scenario: Scenario,
) -> None:
    sc, svc = scenario, scenario.service(NAME)
    sc.cluster.kubectl("apply", "-f", "-", stdin=MODELS_CLAIM.format(namespace=sc.namespace))
    sc.cluster.apply(copy.deepcopy(TINY_SERVICE), sc.namespace)
    timeline = sc.timeline(NAME)
    # The first engine's cold start, bounded by the start the rendered startup probe allows.
    sc.fleet.front(NAME, timeout=600)
    load = sc.start_load(BASE, NAME)
    assert svc.replicas() == 1, "one stream at a cap of 3 needs one replica"
    step_at = load.set(STEP)

    up = wait_for(
        "a scale-up decision",
        lambda: timeline.first(step_at, lambda s: s.replicas > 1),
        timeout=120,
    )

    def all_serving() -> bool:
        return svc.replicas() == MAX_REPLICAS and sc.fleet.backends(NAME) == MAX_REPLICAS

    wait_for(f"{MAX_REPLICAS} real engines serving", all_serving, timeout=600, every=1)
    serving_at = timeline.samples[-1].at
    # A new pod is not Ready while its vLLM loads: the emulator reports the probes as a kubelet
    # does (kwok marks a running pod Ready for a moment first), so the Deployment, and the
    # operator reading it, keep counting a replica as starting until its engine answers.
    new = [w for w in sc.fleet.starts(NAME) if w["startedAt"] >= step_at]
    assert len(new) == MAX_REPLICAS - 1, new
    last_engine_ready = max(w["readyAt"] for w in new)
    wait_for(
        "the Deployment to count every replica ready",
        lambda: timeline.first(last_engine_ready, lambda s: s.ready >= MAX_REPLICAS),
        timeout=30,
    )
    short = [s.at for s in timeline.between(up.at, last_engine_ready) if s.ready < MAX_REPLICAS]
    # 3 s: the emulator's status patch and the Deployment controller's count follow the probe.
    assert short and short[-1] >= last_engine_ready - 3.0, (
        f"the Deployment counted {MAX_REPLICAS} ready from {short[-1] if short else up.at:.1f}, "
        f"{last_engine_ready - (short[-1] if short else up.at):.1f} s before the last new engine "
        "answered: readiness is not the engine's"
    )
    all_ready_s = round(last_engine_ready - up.at, 1)

    # The step holds for HELD_AFTER_SERVING_S more with both engines serving: long enough for the
    # operator to read windows of the two-engine service (and, with a low reading, to scale in).
    held_until = serving_at + HELD_AFTER_SERVING_S
    wait_for(
        "the step to hold with both engines serving",
        lambda: timeline.samples[-1].at >= held_until,
        timeout=HELD_AFTER_SERVING_S + 60,
        every=1,
    )
    missed, recovered_at = slo_recovery(timeline.samples, step_at)
    assert missed, "the SLO never broke with six streams at one replica of cap 3"
    first_engine_ready = min(w["readyAt"] for w in new)
    # SLOMet's return is recorded, not asserted: it is the machine's. At one replica TTFT p95
    # sits near the 1 s objective on two cores (1.02 to 2.30 s across runs; a cold CI run read a
    # window under it 38 s before the new engine served), and with two serving the two CPU
    # engines slow each other (engine TTFT p95 0.03 s with one serving, 0.7-1.0 s with two).
    # What the operator owns: it scaled out on the miss and kept the replica while the load held.
    held = timeline.between(up.at, held_until)
    assert all(s.replicas >= up.replicas for s in held), "scaled in while the step load held"

    drop_at = load.set(LOW)

    def at_min() -> bool:
        return svc.replicas() == 1 and sc.fleet.workers(NAME) == 1

    wait_for("scale-in to minReplicas", at_min, timeout=STABILIZATION_S + 240, every=1)

    def drained() -> list[dict[str, Any]] | None:
        stopped = [w for w in sc.fleet.stopped() if w["service"] == NAME]
        return stopped if len(stopped) >= MAX_REPLICAS - 1 else None

    stopped = wait_for("the removed replicas to drain and exit", drained, timeout=300, every=1)
    records = load.stop()
    timeline.stop()
    assert len(stopped) == MAX_REPLICAS - 1, stopped
    assert all(w["exitCode"] == 0 for w in stopped), f"a worker did not drain cleanly: {stopped}"
    # vLLM stopped with its worker: nothing of the engine's process group outlived the gateway.
    assert all(w["engine"] == "vllm" and w["engineProcessesLeft"] == 0 for w in stopped), stopped
    # 429s are the gateway's queue limit shedding a closed loop before the scale-out; anything
    # else not complete (an error, a truncated stream) is a lost request.
    lost = [r for r in incomplete(records) if r.status != 429]
    assert not lost, f"{len(lost)} requests lost or truncated: {lost[:3]}"

    starts = sc.fleet.starts(NAME)
    sc.cluster.kubectl("delete", "pv", f"{sc.namespace}-models", "--wait=false")
    downs = [d for d in timeline.history() if d["replicas"] < d["previousReplicas"]]
    step_records = [r for r in records if r.phase == "step"]
    record_result(
        "real_vllm",
        {
            "engine": "vLLM 0.32.0 CPU build, tiny Llama, cpu-test profile",
            "cold_starts_s": [w["coldStartS"] for w in starts],
            "step_to_decision_s": round(up.at - step_at, 1),
            "decision_to_all_serving_s": round(serving_at - up.at, 1),
            "decision_to_last_engine_ready_s": all_ready_s,
            "step_to_slo_recovered_s": round(recovered_at - step_at, 1) if recovered_at else None,
            "slo_recovered_before_new_engine_served": (
                None if recovered_at is None else recovered_at < first_engine_ready
            ),
            "drop_to_first_scale_in_s": round(epoch(downs[0]["time"]) - drop_at, 1)
            if downs
            else None,
            "scale_in_steps": [f"{d['previousReplicas']}->{d['replicas']}" for d in downs],
            "requests_in_flight_at_sigterm": [w.get("heldAtSigterm") for w in stopped],
            "worker_stop_s": [w.get("stopSeconds") for w in stopped],
            "requests": len(records),
            "lost": len(lost),
            "shed_429": sum(1 for r in records if r.status == 429),
            "client_step": summarize(step_records),
        },
    )

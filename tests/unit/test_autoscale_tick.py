"""The pure parts of the autoscale tick: workload facts, GPU capacity, foreign writers, status."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import autoscale, capacity
from tokenscale.domain.capacity import Plan
from tokenscale.domain.observation import Decision, Observation, ScalerState
from tokenscale.domain.status import MetricsOutage, PrometheusProblem
from tokenscale.handlers.cache import WatchCache
from tokenscale.handlers.runtime import Registry
from tokenscale_contract.catalog import GFD_PRODUCTS

NOW = 1_800_000_000.0


def spec_and_plan(**sections: Any) -> tuple[InferenceServiceSpec, Plan]:
    spec = InferenceServiceSpec.model_validate(minimal_spec(**sections))
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    return spec, plan


def pod(
    name: str,
    ready: bool,
    created: str = "2027-01-15T08:00:00Z",
    node: str | None = "n1",
    gpus: int = 1,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {
            "phase": "Running" if node else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def node(name: str, kind: str, gpus: int, unschedulable: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": GFD_PRODUCTS[kind][0]}},
        "spec": {"unschedulable": unschedulable},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def test_workload_facts_counts_ready_and_starting() -> None:
    dep = {"spec": {"replicas": 3}}
    pods = [pod("a", True), pod("b", False, "2027-01-15T08:01:00Z"), pod("c", True, deleting=True)]
    facts = autoscale.workload_facts(dep, pods, current_cap=32, schedulable=5)
    assert facts.ready_replicas == 1
    assert facts.current_replicas == 3
    assert facts.starting_since == (autoscale.epoch("2027-01-15T08:01:00Z"),)
    assert (facts.current_cap, facts.schedulable_replicas) == (32, 5)


def test_schedulable_replicas_never_spans_nodes() -> None:
    """Two 8-GPU H100 nodes with 3 and 6 free, 4 GPUs per replica, 2 placed -> 3."""
    _, plan = spec_and_plan(model={"source": "hf://m/70", "architecture": "llama-3.1-70b"})
    assert plan.gpus_per_replica == 4
    nodes = [
        node("n1", "h100-80gb", 8),
        node("n2", "h100-80gb", 8),
        node("l4", "l4-24gb", 4),
        node("cordoned", "h100-80gb", 8, unschedulable=True),
    ]
    pods = [
        pod("x", True, node="n1", gpus=5),
        pod("y", True, node="n2", gpus=2),
        pod("pending", False, node=None, gpus=4),
    ]
    found = autoscale.gpu_nodes(nodes, pods)
    assert {n.kind for n in found} == {"h100-80gb", "l4-24gb"}
    assert autoscale.schedulable_replicas(found, plan, scheduled_own=2) == 3


def test_a_multi_node_group_counts_only_whole_free_nodes() -> None:
    """405B bf16: groups of 2 nodes x 8 GPUs. Three free 8-GPU nodes hold one more group, never
    a half; a node with 7 free hosts no pod of the group."""
    spec = InferenceServiceSpec.model_validate(
        minimal_spec(
            model={"source": "hf://m/405", "architecture": "llama-3.1-405b"},
            resources={"gpu": "h100-80gb"},
        )
    )
    plan = capacity.plan(spec, multi_node=True)
    assert isinstance(plan, Plan) and (plan.nodes, plan.gpus_per_replica) == (2, 16)
    free = [node(f"n{i}", "h100-80gb", 8) for i in range(3)] + [node("n3", "h100-80gb", 8)]
    pods = [pod("other", True, node="n3", gpus=1)]
    found = autoscale.gpu_nodes(free, pods)
    assert autoscale.schedulable_replicas(found, plan, scheduled_own=1) == 1 + 1
    five = autoscale.gpu_nodes([node(f"n{i}", "h100-80gb", 8) for i in range(4)], [])
    assert autoscale.schedulable_replicas(five, plan, scheduled_own=0) == 2


def managed(manager: str) -> dict[str, Any]:
    return {"manager": manager, "fieldsV1": {"f:spec": {"f:replicas": {}}}}


def test_foreign_writer_is_named() -> None:
    dep = {
        "spec": {"replicas": 7},
        "metadata": {
            "managedFields": [managed("tokenscale"), managed("horizontal-pod-autoscaler")]
        },
    }
    assert autoscale.foreign_replica_writer(dep, last_applied=4) == "horizontal-pod-autoscaler"
    assert autoscale.foreign_replica_writer(dep, last_applied=7) is None
    assert autoscale.foreign_replica_writer(dep, last_applied=None) is None


def test_the_slim_cached_deployment_still_names_the_writer() -> None:
    # The watch cache keeps only spec.replicas and its owners; the conflict check reads that copy.
    other = {"manager": "kubectl", "fieldsV1": {"f:spec": {"f:template": {}}}}
    full = {
        "spec": {"replicas": 7, "template": {"spec": {"containers": []}}},
        "metadata": {
            "name": "chat",
            "managedFields": [managed("tokenscale"), other, managed("horizontal-pod-autoscaler")],
        },
    }
    key, cache = ("ns-slim", "chat"), WatchCache()
    cache.put_deployment(key, full)
    slim = cache.deployment(key)
    assert slim is not None and "template" not in slim["spec"]
    assert autoscale.replica_field_managers(slim) == ["tokenscale", "horizontal-pod-autoscaler"]
    assert autoscale.foreign_replica_writer(slim, last_applied=4) == "horizontal-pod-autoscaler"


def test_tokenscale_alone_owning_replicas_is_no_conflict() -> None:
    # The lifecycle handler (field manager tokenscale) pulled replicas to a new minReplicas.
    own = {"spec": {"replicas": 3}, "metadata": {"managedFields": [managed("tokenscale")]}}
    assert autoscale.foreign_replica_writer(own, last_applied=2) is None
    unknown = {"spec": {"replicas": 3}, "metadata": {"managedFields": []}}
    assert autoscale.foreign_replica_writer(unknown, last_applied=2) == "another client"


def test_conflict_is_adopted_only_after_a_quiet_period() -> None:
    status = autoscale.conflict_status({}, "kubectl", 7, NOW, 1)
    cond = next(c for c in status["conditions"] if c["type"] == "ScalingConflict")
    assert cond["status"] == "True"
    assert cond["message"] == (
        "kubectl set replicas to 7; tokenscale stopped scaling this service; remove the other "
        "autoscaler, or leave the count alone for 300 s to hand it back"
    )
    assert not autoscale.conflict_resolved(status, 7, NOW + 10)
    assert autoscale.conflict_resolved(status, 7, NOW + autoscale.CONFLICT_QUIET_S)
    moved = autoscale.conflict_status(status, "kubectl", 9, NOW + 100, 1)
    assert not autoscale.conflict_resolved(moved, 9, NOW + autoscale.CONFLICT_QUIET_S)


def decision(replicas: int, previous: int, applied: bool = True, reason: str = "r") -> Decision:
    return Decision(
        replicas=replicas,
        concurrency_cap=24,
        reason=reason,
        previous_replicas=previous,
        applied=applied,
        mode="auto",
        state=ScalerState(concurrency_cap=24),
    )


@pytest.mark.parametrize(
    ("ttft", "itl", "expected", "column"),
    [
        (0.4, 0.03, "True", "True"),
        (1.4, 0.03, "False", "False"),
        (0.4, 0.09, "False", "False"),
        (None, None, "Unknown", "NoTraffic"),
    ],
)
def test_slo_condition(ttft: float | None, itl: float | None, expected: str, column: str) -> None:
    spec, _ = spec_and_plan()
    obs = Observation(sampled_at=NOW, ttft_s=ttft, itl_s=itl, arrival_rate=1.0)
    patch = autoscale.tick_status(spec, {}, decision(2, 2), obs, NOW, 1)
    slo = next(c for c in patch["conditions"] if c["type"] == "SLOMet")
    assert slo["status"] == expected
    assert patch["sloMet"] == column
    if expected == "False":
        assert ">" in slo["message"]


def test_missed_objective_message_has_the_figures() -> None:
    spec, _ = spec_and_plan()
    condition, fields = autoscale.slo_condition(spec, Observation(ttft_s=1.4, itl_s=0.09))
    assert condition.value.message(**fields) == (
        "TTFT p95 1.40 s > 1 s; ITL p95 90 ms > 50 ms; status.lastDecisions says what the "
        "autoscaler does about it"
    )


OUTAGE = MetricsOutage("http://127.0.0.1:9", PrometheusProblem.REFUSED)


def test_prometheus_down_says_what_happened_what_was_done_and_what_to_check() -> None:
    spec, _ = spec_and_plan()
    patch = autoscale.tick_status(spec, {}, decision(3, 3), Observation(), NOW, 1, OUTAGE)
    conds = {c["type"]: c for c in patch["conditions"]}
    assert conds["MetricsAvailable"]["message"] == (
        "Prometheus at http://127.0.0.1:9 did not answer (connection refused); replicas held at "
        "3; check that Prometheus runs and prometheus.url points at it"
    )
    # No figures is not "no traffic": the objective is unknown, and the column says why.
    assert (conds["SLOMet"]["status"], conds["SLOMet"]["reason"]) == ("Unknown", "NoMetrics")
    assert patch["sloMet"] == "NoMetrics"


def test_an_outage_empties_the_ttft_column_once() -> None:
    spec, _ = spec_and_plan()
    seen = Observation(sampled_at=NOW, ttft_s=0.41, itl_s=0.02, arrival_rate=3.0)
    before = autoscale.tick_status(spec, {}, decision(3, 3), seen, NOW, 1)
    assert before["observed"]["ttftSeconds"] == 0.41
    down = autoscale.tick_status(spec, before, decision(3, 3), Observation(), NOW + 15, 1, OUTAGE)
    # null in a merge patch deletes the stored figure: TTFT-P95 shows nothing, not 0.41.
    assert down["observed"]["ttftSeconds"] is None
    assert autoscale.status_changed(before, down)
    stored = {**down, "observed": {"sampledAt": down["observed"]["sampledAt"]}}
    again = autoscale.tick_status(spec, stored, decision(3, 3), Observation(), NOW + 30, 1, OUTAGE)
    assert not autoscale.status_changed(stored, again)  # the outage goes on: no write per tick


def test_no_series_is_no_metrics_too() -> None:
    spec, _ = spec_and_plan()
    patch = autoscale.tick_status(spec, {}, decision(1, 1), Observation(), NOW, 1)
    conds = {c["type"]: c for c in patch["conditions"]}
    assert conds["MetricsAvailable"]["reason"] == "NoSeries"
    assert "replicas held at 1" in conds["MetricsAvailable"]["message"]
    assert patch["sloMet"] == "NoMetrics"


def test_tick_status_records_decisions_and_state() -> None:
    spec, _ = spec_and_plan()
    obs = Observation(sampled_at=NOW, ttft_s=0.5, itl_s=0.02, arrival_rate=3.0)
    old = {"plan": {"concurrencyCap": 16, "tensorParallel": 1}}
    patch = autoscale.tick_status(spec, old, decision(3, 2), obs, NOW, 5)
    conds = {c["type"]: c for c in patch["conditions"]}
    assert conds["MetricsAvailable"]["status"] == "True"
    assert conds["SLOMet"]["status"] == "True"
    assert patch["desiredReplicas"] == 3
    assert patch["plan"]["concurrencyCap"] == 24
    assert patch["lastDecisions"][-1]["replicas"] == 3
    assert patch["autoscaler"]["lastAppliedReplicas"] == 3
    assert patch["observed"]["ttftSeconds"] == 0.5


def test_prometheus_down_is_reported_and_history_is_bounded() -> None:
    spec, _ = spec_and_plan()
    status: dict[str, Any] = {}
    for i in range(15):
        status = {
            **status,
            **autoscale.tick_status(
                spec,
                status,
                decision(2 + i, 1 + i, reason=f"step {i}"),
                Observation(),
                NOW + i,
                1,
                OUTAGE,
            ),
        }
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["MetricsAvailable"]["status"] == "False"
    assert conds["MetricsAvailable"]["reason"] == "PrometheusUnavailable"
    assert len(status["lastDecisions"]) == autoscale.MAX_DECISIONS
    # Oldest first, the newest last: `kubectl describe` lists them in the order they happened.
    assert [d["replicas"] for d in status["lastDecisions"]] == list(range(7, 17))


def test_only_a_decision_that_changes_something_is_recorded_and_written() -> None:
    spec, _ = spec_and_plan()
    obs = Observation(sampled_at=NOW, ttft_s=0.5, itl_s=0.02, arrival_rate=3.0)
    first = autoscale.tick_status(spec, {}, decision(2, 2, reason="3.0 req/s; hold 2"), obs, NOW, 1)
    assert autoscale.new_decision({}, first) == first["lastDecisions"][-1]
    # The same hold with other figures in its reason: no record, no log line, no status write.
    held = autoscale.tick_status(
        spec, first, decision(2, 2, reason="3.1 req/s; hold 2"), obs, NOW + 15, 1
    )
    assert held["lastDecisions"] == first["lastDecisions"]
    assert autoscale.new_decision(first, held) is None
    assert not autoscale.status_changed(first, held)
    scaled = autoscale.tick_status(spec, held, decision(4, 2, reason="2 → 4"), obs, NOW + 30, 1)
    assert [d["replicas"] for d in scaled["lastDecisions"]] == [2, 4]
    assert autoscale.new_decision(held, scaled) == scaled["lastDecisions"][-1]
    assert autoscale.status_changed(held, scaled)


def test_advisory_decision_keeps_last_applied() -> None:
    spec, _ = spec_and_plan()
    old = {"autoscaler": {"lastAppliedReplicas": 2}}
    patch = autoscale.tick_status(spec, old, decision(5, 2, applied=False), Observation(), NOW, 1)
    assert patch["autoscaler"]["lastAppliedReplicas"] == 2


def test_status_write_is_skipped_when_only_the_sample_time_moved() -> None:
    spec, _ = spec_and_plan()
    obs = Observation(sampled_at=NOW, ttft_s=0.5, itl_s=0.02)
    first = autoscale.tick_status(spec, {}, decision(2, 2), obs, NOW, 1)
    later = autoscale.tick_status(spec, first, decision(2, 2), obs, NOW + 15, 1)
    assert later["observed"]["sampledAt"] != first["observed"]["sampledAt"]
    assert not autoscale.status_changed(first, later)
    slower = Observation(sampled_at=NOW, ttft_s=0.9, itl_s=0.02)
    assert autoscale.status_changed(
        first, autoscale.tick_status(spec, first, decision(2, 2), slower, NOW + 30, 1)
    )


@pytest.mark.parametrize(
    ("recommended", "current", "previous", "announce"),
    [
        (5, 1, 1, True),  # new advice
        (5, 1, 5, False),  # the same advice again next tick: no second Event
        (6, 1, 5, True),  # the advice changed
        (1, 1, 5, False),  # back to what runs: nothing to recommend
        (3, 1, None, True),  # first decision ever
    ],
)
def test_advisory_announces_each_recommendation_once(
    recommended: int, current: int, previous: int | None, announce: bool
) -> None:
    assert autoscale.announce_recommendation(recommended, current, previous) is announce


class _FakeKube:
    """Records status patches; answers 409 when the precondition version is stale."""

    def __init__(self, server_version: str) -> None:
        self.server_version = server_version
        self.patches: list[tuple[dict[str, Any], str | None]] = []

    def patch_status(self, ref: Any, status: dict[str, Any], resource_version: str | None) -> None:
        from kubernetes.client.exceptions import ApiException

        if self.server_version == "gone":
            raise ApiException(status=404, reason="Not Found")
        if resource_version is not None and resource_version != self.server_version:
            raise ApiException(status=409, reason="Conflict")
        self.patches.append((status, resource_version))


def test_status_from_a_stale_copy_is_not_written_and_not_acted_on() -> None:
    # The lifecycle handler wrote Planned after the autoscaler's cached copy (version 7): a
    # merge patch of `conditions` computed from version 7 would drop Planned.
    from tokenscale.domain.names import ServiceRef
    from tokenscale.handlers import autoscale as handler

    key = ("ns", "stale")
    kube = _FakeKube(server_version="9")
    reg = Registry(kube_factory=lambda: kube)  # type: ignore[arg-type,return-value]
    reg.watched.put_service(key, {"metadata": {"resourceVersion": "7"}, "status": {}})
    patch = {"conditions": [{"type": "MetricsAvailable", "status": "True"}]}
    ref = ServiceRef("stale", "ns")
    assert handler._write_status(reg, key, ref, patch, "7") is False
    assert kube.patches == []
    kube.server_version = "7"
    assert handler._write_status(reg, key, ref, patch, "7") is True
    assert kube.patches == [(patch, "7")]
    # Deleted between the watch's copy and the write: nothing written, nothing acted on, and
    # no failed tick (the DELETED event is on its way).
    kube.server_version = "gone"
    other = {"conditions": [{"type": "MetricsAvailable", "status": "False"}]}
    assert handler._write_status(reg, key, ref, other, "7") is False


def test_a_null_in_the_patch_equals_a_key_the_server_dropped() -> None:
    # A merge patch's null deletes the key: the stored status has no lastScaleAt at all.
    stored = {"autoscaler": {"concurrencyCap": 79, "recommendations": [], "serviceFactor": 1}}
    patch = {
        "autoscaler": {
            "concurrencyCap": 79,
            "recommendations": [],
            "serviceFactor": 1.0,
            "lastScaleAt": None,
            "burstUntil": None,
        }
    }
    assert not autoscale.status_changed(stored, patch)
    burst = {"autoscaler": {**patch["autoscaler"], "burstUntil": 5.0}}
    assert autoscale.status_changed(stored, burst)


def test_the_cache_keeps_what_the_tick_reads_and_little_else() -> None:
    key, cache = ("ns", "slim"), WatchCache()
    noise = {"manager": "kube-controller-manager", "fieldsV1": {"f:status": {"f:x": {}}}}
    deployment = {
        "metadata": {
            "name": "slim",
            "namespace": "ns",
            "annotations": {"big": "x" * 10_000},
            "managedFields": [managed("kubectl"), noise],
        },
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "w"}]}}},
        "status": {"readyReplicas": 5},
    }
    cache.put_deployment(key, deployment)
    slim = cache.deployment(key)
    assert slim is not None and "annotations" not in slim["metadata"]
    assert slim["spec"] == {"replicas": 5} and slim["status"] == {"readyReplicas": 5}
    assert autoscale.foreign_replica_writer(slim, last_applied=3) == "kubectl"
    cache.put_pod(key, "p", pod("p", True, deleting=True))
    (kept,) = cache.pods(key)
    facts = autoscale.workload_facts(slim, [kept], current_cap=8, schedulable=None)
    assert facts.ready_replicas == 0 and kept["spec"] == {"nodeName": "n1"}


def test_a_service_being_deleted_is_left_alone() -> None:
    """Its namespace may be terminating (new Events refused with 403) and its workload already
    collected (404 on the scale subresource): the tick touches nothing, logs nothing."""
    from tokenscale.handlers import autoscale as handler

    def no_kube() -> Any:
        raise AssertionError("the tick talked to the API server about a service being deleted")

    key = ("ns", "going")
    body = {
        "metadata": {
            "name": "going",
            "namespace": "ns",
            "deletionTimestamp": "2027-01-15T08:00:00Z",
        },
        "spec": minimal_spec(),
        "status": {},
    }
    reg = Registry(kube_factory=no_kube)
    reg.watched.put_service(key, body)
    handler.tick_service(reg, key, body, None, None, None, NOW)

"""How a multi-node plan reaches the cluster: which workload, which pods serve, what the status
counts, and what the operator says when LeaderWorkerSet is missing."""

from __future__ import annotations

from typing import Any

from tests.conftest import minimal_spec
from tests.unit.test_chart import render as render_chart
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, lifecycle, names, probes, render, status, workload
from tokenscale.domain.capacity import Infeasible, Plan
from tokenscale.domain.names import ServiceRef

REF = ServiceRef("huge", "team-a", uid="1234", generation=1)
MODEL = {"source": "hf://meta-llama/Llama-3.1-405B-Instruct", "architecture": "llama-3.1-405b"}


def spec_405b(**sections: Any) -> InferenceServiceSpec:
    raw = minimal_spec(**{"model": MODEL, "resources": {"gpu": "h100-80gb"}, **sections})
    return InferenceServiceSpec.model_validate(raw)


def group_plan() -> Plan:
    plan = capacity.plan(spec_405b(), multi_node=True)
    assert isinstance(plan, Plan) and plan.nodes == 2
    return plan


def pod(name: str, index: str | None, group: str | None, **status_: Any) -> dict[str, Any]:
    labels = {names.SERVICE_LABEL: "huge"}
    if index is not None:
        labels[workload.WORKER_INDEX_LABEL] = index
    if group is not None:
        labels[workload.GROUP_INDEX_LABEL] = group
    return {"metadata": {"name": name, "labels": labels}, "status": status_}


def test_without_leaderworkerset_the_plan_is_refused_naming_the_group_and_the_install() -> None:
    result = capacity.plan(spec_405b())
    assert isinstance(result, Infeasible)
    assert "756 GiB" in result.reason
    assert "Across 2 nodes of 8 GPUs" in result.reason
    assert "leaderworkersets.leaderworkerset.x-k8s.io" in result.reason
    cond = next(c for c in status.unusable_conditions([], result, "t", 1) if c["type"] == "Planned")
    assert cond["status"] == "False" and "LeaderWorkerSet" in cond["message"]


def test_a_group_plan_renders_a_leaderworkerset_and_serves_through_its_leaders() -> None:
    plan = group_plan()
    children = render.render_all(REF, spec_405b(), plan, 8, podmonitor_available=True)
    kinds = {c["kind"]: c for c in children}
    assert "Deployment" not in kinds and "LeaderWorkerSet" in kinds
    leaders = {names.SERVICE_LABEL: "huge", workload.WORKER_INDEX_LABEL: "0"}
    assert kinds["Service"]["spec"]["selector"] == leaders
    assert kinds["PodMonitor"]["spec"]["selector"]["matchLabels"] == leaders
    # A drain may take one pod of any group at a time: every pod of the service.
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == (
        names.selector_labels(REF)
    )
    assert workload.kind_for(plan) == workload.LEADER_WORKER_SET


def test_a_single_node_plan_still_renders_a_deployment_over_all_its_pods() -> None:
    spec = InferenceServiceSpec.model_validate(minimal_spec())
    plan = capacity.plan(spec, multi_node=True)
    assert isinstance(plan, Plan) and plan.nodes == 1
    kinds = {c["kind"]: c for c in render.render_all(REF, spec, plan, 8, False)}
    assert "LeaderWorkerSet" not in kinds
    assert kinds["Service"]["spec"]["selector"] == names.selector_labels(REF)
    assert workload.kind_for(plan) == workload.DEPLOYMENT


def test_a_group_counts_once_through_its_leader() -> None:
    pods = [
        pod("huge-0", "0", "0"),
        pod("huge-0-1", "1", "0"),
        pod("huge-1", "0", "1"),
        pod("huge-1-1", "1", "1"),
    ]
    assert [p["metadata"]["name"] for p in workload.serving_pods(pods)] == ["huge-0", "huge-1"]
    plain = [pod("chat-abc", None, None), pod("chat-def", None, None)]
    assert workload.serving_pods(plain) == plain


def test_a_group_with_a_pending_pod_is_one_unschedulable_replica() -> None:
    pending = {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}
        ],
    }
    pods = [
        pod("huge-0", "0", "0", phase="Running"),
        pod("huge-0-1", "1", "0", phase="Running"),
        pod("huge-1", "0", "1", **pending),
        pod("huge-1-1", "1", "1", **pending),
    ]
    lws = {
        "kind": "LeaderWorkerSet",
        "metadata": {"generation": 3},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2},
    }
    state = lifecycle.workload_state(lws, pods)
    assert (state.replicas, state.ready, state.unschedulable) == (2, 1, 1)
    # LWS reports no observedGeneration: its counts alone say whether it rolled out.
    assert state.generation_observed
    deployment = {**lws, "kind": "Deployment"}
    assert not lifecycle.workload_state(deployment, pods).generation_observed


def test_a_deleted_pod_breaks_its_group_only_while_the_group_is_wanted() -> None:
    worker = pod("huge-1-1", "1", "1")
    assert workload.lost_group(worker, replicas=2) == 1
    assert workload.lost_group(worker, replicas=1) is None  # a scale-down from 2 to 1
    assert workload.lost_group(worker, replicas=None) is None  # the whole workload went
    assert workload.lost_group(pod("chat-abc", None, None), replicas=2) is None


def test_status_and_cold_start_count_the_group() -> None:
    spec = spec_405b(model={**MODEL, "cache": {"claimName": "models"}})
    plan = capacity.plan(spec, multi_node=True)
    assert isinstance(plan, Plan)
    shown = status.plan_status(plan, 8)
    assert (shown["nodesPerReplica"], shown["gpusPerReplica"]) == (2, 16)
    # Each node reads its own stages' half of the 756 GiB: 378 s at 1 GiB/s, plus warm-up.
    single = probes.cache_cold_start_seconds(spec, plan) - probes.WARMUP_SECONDS
    assert round(single) == round(probes.checkpoint_gib(spec, plan) / 2)
    # The group is ready after one node's share and the ranks' rendezvous: what it plans with.
    node = probes.cache_cold_start_seconds(spec, plan)
    assert probes.cold_start_seconds(spec, plan) == node + probes.GROUP_RENDEZVOUS_SECONDS


def test_the_chart_grants_leaderworkersets_exactly_what_the_operator_uses() -> None:
    docs = [d for d in render_chart() if d["kind"] == "ClusterRole"]
    rules = [r for d in docs for r in d.get("rules") or []]
    lws = {
        res: set(r["verbs"])
        for r in rules
        if "leaderworkerset.x-k8s.io" in r.get("apiGroups", [])
        for res in r["resources"]
    }
    assert lws == {
        "leaderworkersets": {"get", "list", "watch", "create", "patch"},
        "leaderworkersets/scale": {"patch"},
    }

"""A model larger than one node, served by a LeaderWorkerSet group, with the real LWS v0.7.0
controller and its webhooks (e2e/cluster/lws.sh) beside the real control plane.

Llama-3.1-405B at bf16 (756 GiB of weights) does not fit the 8 x 80 GB of one A100 node: the
plan is a group of 2 pods of 8 GPUs, pipeline parallel across them. Three dedicated 8-GPU
A100-80GB nodes (a kind no other suite uses, so the capacity is exact) hold one group and half
of another: the autoscaler must never ask for the half."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from e2e.autoscale.conftest import Scenario
from e2e.autoscale.helpers import record_result, service
from e2e.autoscale.test_capacity import is_unschedulable
from e2e.fleet.loadgen import Phase
from e2e.harness import CLUSTER_DIR, Cluster, wait_for
from tokenscale_contract import interface as contract

POOL, KIND, GPUS, NODES = "a100", "a100-80gb", 8, 3
WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"


def pool_nodes(cluster: Cluster) -> set[str]:
    nodes = cluster.kubectl("get", "nodes", "-l", f"tokenscale.io/pool={POOL}", "-o", "name")
    return {n.removeprefix("node/") for n in nodes.stdout.split()}


@pytest.fixture
def a100_nodes(cluster: Cluster) -> Iterator[set[str]]:
    if cluster.get("crd", "leaderworkersets.leaderworkerset.x-k8s.io") is None:
        # Only a cluster brought by TOKENSCALE_E2E_EXISTING_CLUSTER can lack it: up.sh installs
        # LeaderWorkerSet in every cluster it starts.
        pytest.skip("no LeaderWorkerSet CRD in this cluster: install LWS v0.7.0 and its webhooks")
    before = pool_nodes(cluster)
    subprocess.run(
        ["bash", str(CLUSTER_DIR / "add-nodes.sh"), POOL, str(NODES), str(GPUS)],
        check=True,
        env={**os.environ, **cluster.env},
    )
    added = pool_nodes(cluster) - before
    assert len(added) == NODES, added
    yield added
    for node in added:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def leaderworkerset(sc: Scenario, name: str = "chat") -> dict[str, Any]:
    return sc.cluster.get("leaderworkerset", name, sc.namespace) or {}


def group_pods(sc: Scenario) -> list[dict[str, Any]]:
    return [p for p in sc.service().pods() if not p["metadata"].get("deletionTimestamp")]


def env_of(pod: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def one_ready_group(sc: Scenario) -> dict[str, dict[str, Any]] | None:
    """{"leader": pod, "worker": pod} once the LWS reports one ready group and both its pods are
    Ready; None before."""
    lws = leaderworkerset(sc)
    if (lws.get("status") or {}).get("readyReplicas") != 1:
        return None
    pods = group_pods(sc)
    by_index = {p["metadata"]["labels"].get(WORKER_INDEX): p for p in pods}
    if len(pods) != 2 or set(by_index) != {"0", "1"} or not all(ready(p) for p in pods):
        return None
    return {"leader": by_index["0"], "worker": by_index["1"]}


def test_a_405b_group_is_placed_whole_capacity_limited_restarted_and_collected(
    a100_nodes: set[str], scenario: Scenario
) -> None:
    sc, svc = scenario, scenario.service()
    doc = service(
        model={
            "source": "hf://meta-llama/Llama-3.1-405B-Instruct",
            "architecture": "llama-3.1-405b",
            "maxModelLen": 8192,
        },
        resources={"gpu": KIND, "cpu": "1", "memory": "2Gi"},
        quantization={"method": "none"},
        slo={"ttftSeconds": 2.0, "itlSeconds": 0.2},
        scaling={
            "minReplicas": 1,
            "maxReplicas": 4,
            "coldStartSeconds": 5,
            "batch": {"enabled": True, "minConcurrency": 1, "maxConcurrency": 2},
        },
    )
    sc.cluster.apply(doc, sc.namespace)

    # 1. One group of a leader and a worker, on two different nodes of the pool, Ready.
    group = wait_for("one ready group of 2 pods", lambda: one_ready_group(sc), timeout=180)
    leader, worker = group["leader"], group["worker"]
    nodes = {leader["spec"]["nodeName"], worker["spec"]["nodeName"]}
    assert len(nodes) == 2 and nodes <= a100_nodes, nodes
    lws = leaderworkerset(sc)
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    for pod in (leader, worker):
        gpus = pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        assert gpus == str(GPUS)
    # The LWS pod webhook ran: the worker knows its rank and where its leader is.
    env = env_of(worker)
    assert env.get("LWS_WORKER_INDEX") == "1" and env.get("LWS_GROUP_SIZE") == "2", env
    assert env.get("LWS_LEADER_ADDRESS", "").startswith("chat-0.chat."), env

    def serving() -> dict[str, Any] | None:
        status = svc.status()
        ok = status.get("readyReplicas") == 1 and svc.condition("Ready", status)["status"] == "True"
        return status if ok else None

    status = wait_for("the service Ready with 1 group", serving, timeout=60)
    assert status["plan"]["nodesPerReplica"] == 2 and status["plan"]["gpusPerReplica"] == 16

    # Only the leader serves: the Service selects it alone, and the fleet runs one engine.
    selector = sc.cluster.get("service", "chat", sc.namespace)["spec"]["selector"]  # type: ignore[index]
    assert selector.get(WORKER_INDEX) == "0", selector
    url = sc.fleet.front("chat")
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    config = json.loads(env_of(leader)[contract.CONFIG_ENV] or "{}")
    answer = client.completions.create(
        model=config["servedName"], prompt="hi", max_tokens=4, extra_body={"ignore_eos": True}
    )
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    assert sc.fleet.workers("chat") == 1

    # 2. Demand for 4 groups; 3 free nodes hold 1 (placed) + 0: CapacityLimited, never half.
    load = sc.load(url)
    started = load.start(Phase("flood", concurrency=8, prompt_tokens=64, max_tokens=32))

    def limited() -> dict[str, Any] | None:
        cond = svc.condition("CapacityLimited")
        good = cond.get("status") == "True" and cond.get("reason") == "NotEnoughGPUs"
        return cond if good else None

    cond = wait_for("CapacityLimited=True", limited, timeout=90, every=1)
    detected_s = time.time() - started
    assert "only 1 can be scheduled" in str(cond["message"]), cond
    settle_until = time.time() + 15
    while time.time() < settle_until:
        lws = leaderworkerset(sc)
        assert lws["spec"]["replicas"] == 1, lws["spec"]
        pods = group_pods(sc)
        assert not [p["metadata"]["name"] for p in pods if is_unschedulable(p)]
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        time.sleep(1)
    load.stop()

    # 3. A worker rank lost: LWS recreates the whole group; an Event says so, and the group
    # serves again.
    sc.cluster.kubectl(
        "delete", "pod", worker["metadata"]["name"], "-n", sc.namespace, "--wait=false"
    )
    events = wait_for(
        "a GroupRestarted Event", lambda: svc.events("GroupRestarted") or None, timeout=60
    )
    assert f"lost pod {worker['metadata']['name']}" in events[0]["message"], events[0]

    def regrouped() -> dict[str, dict[str, Any]] | None:
        again = one_ready_group(sc)
        return (
            again
            if again and again["leader"]["metadata"]["uid"] != leader["metadata"]["uid"]
            else None
        )

    wait_for("the group recreated with a new leader, Ready", regrouped, timeout=180)
    wait_for("the service Ready again", serving, timeout=60)

    # 4. Deleting the service takes the LeaderWorkerSet and every pod of every group with it.
    sc.cluster.kubectl("delete", "inferenceservice", "chat", "-n", sc.namespace, "--wait=false")
    wait_for("the LeaderWorkerSet collected", lambda: not leaderworkerset(sc), timeout=60)
    wait_for("every group pod gone", lambda: not sc.service().pods(), timeout=90)
    record_result(
        "multi_node_group",
        {
            "nodes_per_group": 2,
            "load_to_capacity_limited_s": round(detected_s, 1),
            "capacity_message": cond["message"],
            "restart_event": events[0]["message"],
        },
    )

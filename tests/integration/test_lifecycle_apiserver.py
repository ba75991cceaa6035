"""The lifecycle handlers against a real kube-apiserver + etcd (no kopf loop, no controllers).

Each test calls the handler functions kopf calls (`on_service` for create/update/resume,
`on_child` for an event on a child) with the body read back from the API server, through the
operator's own `Kube` wrapper on its own user. What the API server stores is then read back:
the real server-side apply, field managers, owner references, status subresource and CRD schema.
The last test runs `tokenscale run` as a process instead, for kopf's own watches and filters.
The kwok e2e keeps scheduling, garbage collection and autoscaling."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.apiserver import (
    OPERATOR_USER,
    AuditCount,
    ControlPlane,
    free_port,
    install_crds,
    wait_until,
)
from tests.tools import ROOT, cluster_tool
from tokenscale.adapters.kube import Kube
from tokenscale.api.v1alpha1 import GROUP, PLURAL, VERSION, InferenceServiceSpec
from tokenscale.domain import capacity, status
from tokenscale.domain.names import FIELD_MANAGER, ServiceRef
from tokenscale.handlers import children, lifecycle
from tokenscale.handlers.runtime import Registry

pytestmark = pytest.mark.integration
NAME = "chat"
# Every child on a cluster that serves PodMonitor: kind -> apiVersion.
CHILDREN = {
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
}


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A namespace of the test's own (nothing deletes it: there is no namespace controller)."""
    readable = re.sub("[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{readable}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}"
    client.CoreV1Api(control_plane.api_client()).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def registry(control_plane: ControlPlane) -> Iterator[Registry]:
    """The operator's shared state for this test alone (its own API wrapper, watch caches and
    reconcile coordination), as `tokenscale run` hands one to kopf's memo."""
    operator = Kube(control_plane.api_client(OPERATOR_USER))
    yield Registry(kube_factory=lambda: operator)
    operator.api.close()


@pytest.fixture
def memo(registry: Registry) -> kopf.Memo:
    """What kopf passes every handler."""
    return kopf.Memo(registry=registry)


def example(name: str = NAME, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "llama-70b-awq.yaml").read_text())
    doc["metadata"] = {"name": name}
    doc["spec"]["scaling"]["maxReplicas"] = 3
    doc["spec"].update(spec)
    return doc


def custom(plane: ControlPlane) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(plane.api_client())


def read_service(plane: ControlPlane, namespace: str, name: str = NAME) -> dict[str, Any]:
    obj: dict[str, Any] = custom(plane).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def create_service(plane: ControlPlane, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    custom(plane).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc)
    return read_service(plane, namespace, doc["metadata"]["name"])


def deliver_service(plane: ControlPlane, memo: kopf.Memo, namespace: str, name: str = NAME) -> None:
    """What kopf does on create, spec update or resume: call on_service with the stored body."""
    lifecycle.on_service(body=kopf.Body(read_service(plane, namespace, name)), memo=memo)


def read_child(plane: ControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    api = plane.api_client()
    try:
        resource = DynamicClient(api).resources.get(api_version=CHILDREN[kind], kind=kind)
        obj: dict[str, Any] = resource.get(name=name, namespace=namespace).to_dict()
    except NotFoundError:
        return None
    finally:
        api.close()
    return obj


def children_of(plane: ControlPlane, namespace: str, name: str = NAME) -> dict[str, Any]:
    """Every child that exists, by kind (a child's name is the service's, or <name>-tuning)."""
    found = {}
    for kind in CHILDREN:
        child = read_child(
            plane, kind, namespace, f"{name}-tuning" if kind == "ConfigMap" else name
        )
        if child is not None:
            found[kind] = child
    return found


def deliver_child(
    plane: ControlPlane, memo: kopf.Memo, kind: str, namespace: str, event: str
) -> None:
    """What kopf does on an event of a labelled child: call on_child with the object."""
    body = read_child(plane, kind, namespace, f"{NAME}-tuning" if kind == "ConfigMap" else NAME)
    assert body is not None, f"{kind} {NAME} is not there to deliver"
    children.on_child(body=kopf.Body(body), type=event, memo=memo)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    found = next((c for c in conds if c["type"] == kind), None)
    assert found is not None, f"no {kind} condition in {conds}"
    return found


def worker_config(deployment: dict[str, Any]) -> dict[str, Any]:
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    raw = next(e["value"] for e in env if e["name"] == "TOKENSCALE_WORKER_CONFIG")
    config: dict[str, Any] = json.loads(raw)
    return config


def versions(plane: ControlPlane, namespace: str) -> dict[str, str]:
    """resourceVersion of the service and of each child: any stored write changes one."""
    objs = {**children_of(plane, namespace), "InferenceService": read_service(plane, namespace)}
    return {kind: obj["metadata"]["resourceVersion"] for kind, obj in objs.items()}


def test_create_applies_every_child_owned_and_managed_by_tokenscale(
    control_plane: ControlPlane, namespace: str, memo: kopf.Memo
) -> None:
    owner = create_service(control_plane, namespace, example())
    deliver_service(control_plane, memo, namespace)
    found = children_of(control_plane, namespace)
    assert set(found) == set(CHILDREN)
    for kind, child in found.items():
        meta = child["metadata"]
        (ref,) = meta["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == (
            "InferenceService",
            NAME,
            owner["metadata"]["uid"],
        ), kind
        assert ref.get("controller") is True, kind
        appliers = {m["manager"] for m in meta["managedFields"] if m["operation"] == "Apply"}
        assert appliers == {FIELD_MANAGER}, kind
        if kind != "PodMonitor":  # kopf watches these by label: a child without it is unseen
            assert children.MANAGED.items() <= (meta.get("labels") or {}).items(), kind
    assert found["Deployment"]["spec"]["replicas"] == owner["spec"]["scaling"]["minReplicas"]


def test_status_reports_the_plan_and_follows_the_deployment(
    control_plane: ControlPlane, namespace: str, memo: kopf.Memo
) -> None:
    create_service(control_plane, namespace, example())
    deliver_service(control_plane, memo, namespace)
    obj = read_service(control_plane, namespace)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    planned, ready = condition(obj, "Planned"), condition(obj, "Ready")
    assert (planned["status"], planned["reason"]) == ("True", "Planned")
    plan = capacity.plan(InferenceServiceSpec.model_validate(obj["spec"]))
    assert isinstance(plan, capacity.Plan)
    assert planned["message"] == status.plan_summary(plan)
    assert (ready["status"], ready["reason"]) == ("False", "NoReadyReplicas")
    assert obj["status"]["plan"]["gpusPerReplica"] >= 1
    # The budget and its rule survive the CRD's structural schema (unknown status fields are
    # pruned by the API server without a word).
    budget = {
        k: obj["status"]["plan"].get(k)
        for k in ("maxNumBatchedTokens", "maxNumBatchedTokensSource")
    }
    assert budget == {
        "maxNumBatchedTokens": plan.max_num_batched_tokens,
        "maxNumBatchedTokensSource": plan.max_num_batched_tokens_source,
    }
    # Play the Deployment controller (there is none here): one replica up and ready.
    apps = client.AppsV1Api(control_plane.api_client())
    deployment = apps.read_namespaced_deployment(NAME, namespace)
    rollout = {"observedGeneration": deployment.metadata.generation, "replicas": 1}
    rollout |= {"readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    apps.patch_namespaced_deployment_status(NAME, namespace, {"status": rollout})
    deliver_child(control_plane, memo, "Deployment", namespace, "MODIFIED")
    obj = read_service(control_plane, namespace)
    ready, progressing = condition(obj, "Ready"), condition(obj, "Progressing")
    assert (ready["status"], ready["reason"]) == ("True", "Serving")
    assert (progressing["status"], progressing["reason"]) == ("False", "Stable")
    assert obj["status"]["readyReplicas"] == 1


def test_infeasible_spec_creates_nothing_and_warns_once(
    control_plane: ControlPlane, namespace: str, memo: kopf.Memo
) -> None:
    doc = example()
    doc["spec"]["resources"] = {"gpu": "l4-24gb", "gpusPerReplica": 1}  # 70B on one 24 GB GPU
    create_service(control_plane, namespace, doc)
    deliver_service(control_plane, memo, namespace)
    deliver_service(control_plane, memo, namespace)  # a resume: the same reason is not posted again
    obj = read_service(control_plane, namespace)
    planned, ready = condition(obj, "Planned"), condition(obj, "Ready")
    assert (planned["status"], planned["reason"]) == ("False", "Infeasible")
    assert (ready["status"], ready["reason"]) == ("False", "Infeasible")
    assert children_of(control_plane, namespace) == {}
    events = client.CoreV1Api(control_plane.api_client()).list_namespaced_event(namespace).items
    assert [(e.type, e.involved_object.name) for e in events] == [("Warning", NAME)]


def test_an_event_in_a_terminating_namespace_is_dropped_not_raised(
    control_plane: ControlPlane, namespace: str, registry: Registry
) -> None:
    """An autoscale tick that lands while its namespace is being deleted must not fail on the
    Event it posts (the API server refuses new objects there)."""
    kube, core = registry.kube(), client.CoreV1Api(control_plane.api_client())
    ref = ServiceRef(NAME, namespace)
    kube.event(ref, "Normal", "Recommendation", "while the namespace lives")
    core.delete_namespace(namespace)  # no namespace controller here: it stays Terminating
    assert core.read_namespace(namespace).status.phase == "Terminating"
    kube.event(ref, "Normal", "Recommendation", "while the namespace goes away")
    stored = [e.message for e in core.list_namespaced_event(namespace).items]
    assert stored == ["while the namespace lives"]


def test_spec_change_rolls_the_children_and_status_follows(
    control_plane: ControlPlane, namespace: str, memo: kopf.Memo
) -> None:
    doc = example()
    create_service(control_plane, namespace, doc)
    deliver_service(control_plane, memo, namespace)
    before = children_of(control_plane, namespace)["Deployment"]
    changed = copy.deepcopy(doc["spec"])
    changed["model"]["revision"] = "v2"
    changed["scaling"]["minReplicas"] = 2
    custom(control_plane).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME, {"spec": changed}
    )
    deliver_service(control_plane, memo, namespace)
    after = children_of(control_plane, namespace)["Deployment"]
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert worker_config(before).get("revision") != "v2"
    assert worker_config(after)["revision"] == "v2"
    assert after["spec"]["replicas"] == 2  # raised to the new minReplicas
    obj = read_service(control_plane, namespace)
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 2
    assert condition(obj, "Planned")["observedGeneration"] == 2


def test_hand_edits_of_owned_fields_are_put_back_by_the_next_reconcile(
    control_plane: ControlPlane, namespace: str, memo: kopf.Memo
) -> None:
    create_service(control_plane, namespace, example())
    deliver_service(control_plane, memo, namespace)
    image = children_of(control_plane, namespace)["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    selector = '{"spec":{"selector":{"tokenscale.io/service":"someone-else"}}}'
    control_plane.kubectl("patch", "service", NAME, "-n", namespace, "--type=merge", "-p", selector)
    control_plane.kubectl(
        "set", "image", f"deployment/{NAME}", "worker=example.com/other:1", "-n", namespace
    )
    edited = children_of(control_plane, namespace)
    assert edited["Service"]["spec"]["selector"] == {"tokenscale.io/service": "someone-else"}
    # Each edit is put back on its own watch event: the operator re-applies the child whose copy
    # no longer holds what it applied, and no other (those it knows to be in place).
    deliver_child(control_plane, memo, "Service", namespace, "MODIFIED")
    restored = children_of(control_plane, namespace)
    assert restored["Service"]["spec"]["selector"] == {"tokenscale.io/service": NAME}
    container = restored["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/other:1"
    deliver_child(control_plane, memo, "Deployment", namespace, "MODIFIED")
    restored = children_of(control_plane, namespace)
    container = restored["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    tuning = restored["ConfigMap"]
    control_plane.kubectl("delete", "configmap", f"{NAME}-tuning", "-n", namespace)
    children.on_child(body=kopf.Body(tuning), type="DELETED", memo=memo)
    recreated = children_of(control_plane, namespace)["ConfigMap"]
    assert recreated["metadata"]["uid"] != tuning["metadata"]["uid"]
    assert recreated["data"] == tuning["data"]


def test_unchanged_reconcile_stores_nothing(
    control_plane: ControlPlane, namespace: str, memo: kopf.Memo, record_property: Any
) -> None:
    """A resume (or a re-applied identical manifest) and the echo of the operator's own write to
    a child, once everything is in place: no write at all, and at most the one read of the
    service's pods (`-rP` shows the calls; before: 7 reads + 6 writes and 8 reads + 6 writes)."""
    create_service(control_plane, namespace, example())
    mark = control_plane.audit_mark()
    deliver_service(control_plane, memo, namespace)
    first = control_plane.audit_since(mark)
    # The audit log sees the operator's user: the first reconcile created every child.
    assert first.writes >= len(CHILDREN), first.summary()
    deliver_service(control_plane, memo, namespace)  # settled: status now holds what it will hold
    settled = versions(control_plane, namespace)
    costs: dict[str, AuditCount] = {}
    for path, deliver in (
        ("on_service", lambda: deliver_service(control_plane, memo, namespace)),
        (
            "on_child",
            lambda: deliver_child(control_plane, memo, "Deployment", namespace, "MODIFIED"),
        ),
        (
            "on_child_configmap",
            lambda: deliver_child(control_plane, memo, "ConfigMap", namespace, ""),
        ),
    ):
        mark = control_plane.audit_mark()
        deliver()
        costs[path] = control_plane.audit_since(mark)
        assert versions(control_plane, namespace) == settled, path
    for path, cost in costs.items():
        print(f"no-op {path}: {cost.summary()}")
        record_property(f"noop_{path}_reads", cost.reads)
        record_property(f"noop_{path}_writes", cost.writes)
        assert cost.writes == 0, f"{path}: {cost.summary()}"
        assert cost.reads <= 1, f"{path}: {cost.summary()}"
    # The echo of the operator's own write is not even a reconcile.
    assert costs["on_child"].reads == 0 and costs["on_child_configmap"].reads == 0


@pytest.fixture
def operator_process(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`tokenscale run -n NAMESPACE` on the operator's user, autoscaling off: kopf's own
    watches, filters and handler calls, nothing called by the test."""
    health = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig(OPERATOR_USER)),
        "TOKENSCALE_METRICS_PORT": str(free_port()),
        "TOKENSCALE_AUTOSCALE": "off",
    }
    log_path = tmp_path / "operator.log"
    command = [str(ROOT / ".venv" / "bin" / "tokenscale"), "run", "-n", namespace]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--health-port", str(health)], env=env, stdout=log, stderr=log
        )

    def alive() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"tokenscale run exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as r:
                return bool(r.status == HTTPStatus.OK)
        except OSError:
            return False

    try:
        wait_until("the operator's liveness endpoint", alive)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # kopf did not stop on SIGTERM: leave nothing behind
            proc.kill()
            proc.wait()


def test_running_operator_creates_children_and_reverts_an_edit_through_its_watches(
    control_plane: ControlPlane, namespace: str, operator_process: subprocess.Popen[bytes]
) -> None:
    manifest = Path(control_plane.workdir / f"{namespace}.yaml")
    manifest.write_text(yaml.safe_dump(example()))
    control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))

    def planned() -> dict[str, Any] | None:
        obj = read_service(control_plane, namespace)
        conds = (obj.get("status") or {}).get("conditions") or []
        done = any(c["type"] == "Planned" and c["status"] == "True" for c in conds)
        return obj if done and set(children_of(control_plane, namespace)) == set(CHILDREN) else None

    wait_until("Planned=True and every child", planned)
    selector = '{"spec":{"selector":{"tokenscale.io/service":"someone-else"}}}'
    control_plane.kubectl("patch", "service", NAME, "-n", namespace, "--type=merge", "-p", selector)
    wait_until(
        "the Service selector put back",
        lambda: (
            children_of(control_plane, namespace)["Service"]["spec"]["selector"]
            == {"tokenscale.io/service": NAME}
        ),
    )


def lws_crd() -> dict[str, Any]:
    """LeaderWorkerSet's own CRD (v0.7.0), as build.sh copies it from the pinned module."""
    manager = Path(cluster_tool("lws-manager"))
    crd: dict[str, Any] = yaml.safe_load(
        (manager.parent / "leaderworkerset.x-k8s.io_leaderworkersets.yaml").read_text()
    )
    return crd


def test_a_model_larger_than_a_node_waits_for_leaderworkerset_then_is_one_group(
    control_plane: ControlPlane, namespace: str
) -> None:
    doc = example()
    doc["spec"]["model"] = {
        "source": "hf://meta-llama/Llama-3.1-405B-Instruct",
        "architecture": "llama-3.1-405b",
        "maxModelLen": 8192,
    }
    doc["spec"]["quantization"] = {"method": "none"}
    doc["spec"]["resources"] = {"gpu": "h100-80gb"}
    create_service(control_plane, namespace, doc)
    # No LeaderWorkerSet in this cluster yet: Planned=False naming the CRD, nothing created.
    before = Registry(kube_factory=lambda: Kube(control_plane.api_client(OPERATOR_USER)))
    deliver_service(control_plane, kopf.Memo(registry=before), namespace)
    planned = condition(read_service(control_plane, namespace), "Planned")
    assert (planned["status"], planned["reason"]) == ("False", "Infeasible")
    assert "leaderworkersets.leaderworkerset.x-k8s.io" in planned["message"]
    assert children_of(control_plane, namespace) == {}
    # LWS installed (a fresh operator: the answer is kept a minute): the plan is one group of
    # 2 nodes, and the real API server takes the LeaderWorkerSet against LWS's own schema.
    install_crds(control_plane.api_client(), [lws_crd()])
    after = Registry(kube_factory=lambda: Kube(control_plane.api_client(OPERATOR_USER)))
    deliver_service(control_plane, kopf.Memo(registry=after), namespace)
    obj = read_service(control_plane, namespace)
    assert condition(obj, "Planned")["status"] == "True"
    assert obj["status"]["plan"]["nodesPerReplica"] == 2
    found = children_of(control_plane, namespace)
    assert "Deployment" not in found
    lws = custom(control_plane).get_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", NAME
    )
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    # The replica count went through the LeaderWorkerSet's scale subresource: minReplicas groups.
    assert lws["spec"]["replicas"] == doc["spec"]["scaling"]["minReplicas"]
    owners = {m["manager"] for m in lws["metadata"]["managedFields"]}
    assert owners == {FIELD_MANAGER}
    assert found["Service"]["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"

"""Deterministic renderers: (service, spec, plan) -> the child objects tokenscale applies.

Nothing here reads the cluster or the clock; the same inputs give byte-identical outputs, which is
what keeps server-side apply of an unchanged spec a no-op.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import model_cache, names
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.placement import DEFAULT_PLACEMENT, GpuPlacement
from tokenscale.domain.pod_security import restricted_container, restricted_pod
from tokenscale.domain.probes import model_cache_size, probes
from tokenscale.domain.worker_config import worker_config
from tokenscale.domain.workload import LEADER_WORKER_SET, WORKER_INDEX_LABEL
from tokenscale_contract import interface as contract

Manifest = dict[str, Any]

DRAIN_GRACE_SECONDS = 120
# Endpoints controllers need a moment to take a terminating pod out of rotation.
PRESTOP_SLEEP_SECONDS = 5
# How often the PodMonitor scrapes a worker; the operator's window averages step at it.
SCRAPE_INTERVAL = "5s"
QUEUE_PER_SLOT = 4
TUNING_DIR = posixpath.dirname(contract.TUNING_PATH)
# Hugging Face downloads land here (an emptyDir: the root filesystem is read-only).
MODEL_CACHE_DIR = "/var/cache/huggingface"
# A writable home on an emptyDir: vLLM writes ~/.cache/vllm (VLLM_CACHE_ROOT: compile and CUDA
# graph caches) and ~/.config/vllm at start, torch and Triton their kernel caches under
# XDG_CACHE_HOME; with HOME here the root filesystem stays read-only.
HOME_DIR = "/home/worker"


def _metadata(ref: ServiceRef, name: str) -> dict[str, Any]:
    return names.child_metadata(ref, name)


def tuning_document(concurrency_cap: int) -> str:
    """The file the gateway watches: its live concurrency cap and queue bound."""
    body = {
        contract.TUNING_CAP_KEY: concurrency_cap,
        contract.TUNING_QUEUE_KEY: concurrency_cap * QUEUE_PER_SLOT,
    }
    return json.dumps(body, sort_keys=True)


def make_configmap(ref: ServiceRef, concurrency_cap: int) -> Manifest:
    """The tuning ConfigMap; the kubelet refreshes the mounted file, the gateway re-reads it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ref, names.tuning_configmap_name(ref)),
        "data": {posixpath.basename(contract.TUNING_PATH): tuning_document(concurrency_cap)},
    }


def make_service(ref: ServiceRef, selector: dict[str, str] | None = None) -> Manifest:
    """The service's ClusterIP Service: every worker pod, or (`selector`) the group leaders."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ref, names.service_name(ref)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector or names.selector_labels(ref),
            "ports": [
                {
                    "name": names.PORT_NAME,
                    "port": contract.GATEWAY_PORT,
                    "targetPort": names.PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def make_pdb(ref: ServiceRef) -> Manifest:
    """One pod at a time may be evicted, so a drain never empties the service. Over every pod of
    the service, leaders and workers alike: evicting a group's worker stops its group as surely
    as evicting its leader, so one pod at a time is one replica at a time there too."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ref, names.pdb_name(ref)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector_labels(ref)}},
    }


def make_podmonitor(ref: ServiceRef, selector: dict[str, str] | None = None) -> Manifest:
    """Only rendered when the monitoring.coreos.com CRDs exist (else: scrape annotations); the
    serving pods only (`selector`): a group's headless ranks export nothing."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(ref, names.podmonitor_name(ref)),
        "spec": {
            "selector": {"matchLabels": selector or names.selector_labels(ref)},
            "podMetricsEndpoints": [
                {"port": names.PORT_NAME, "path": "/metrics", "interval": SCRAPE_INTERVAL}
            ],
            "podTargetLabels": [names.SERVICE_LABEL],
        },
    }


def _sized(size: str | None) -> dict[str, Any]:
    return {} if size is None else {"sizeLimit": size}


def _ephemeral(size: str | None) -> dict[str, Any]:
    return {} if size is None else {"ephemeral-storage": size}


def _volumes(
    spec: InferenceServiceSpec, plan: Plan, ref: ServiceRef
) -> tuple[list[Any], list[Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "tuning", "configMap": {"name": names.tuning_configmap_name(ref)}},
        {"name": "model-cache", "emptyDir": _sized(model_cache_size(spec, plan))},
        {"name": "tmp", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tuning", "mountPath": TUNING_DIR, "readOnly": True},
        {"name": "model-cache", "mountPath": MODEL_CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME_DIR},
    ]
    if plan.tensor_parallel > 1:
        # NCCL exchanges tensors through shared memory; the default 64 MiB /dev/shm is too small.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    source = spec.model.source
    if model_cache.enabled(spec):
        volumes.append(model_cache.replica_volume(ref, spec))
        mounts.append(model_cache.replica_mount())
    elif source.startswith("pvc://"):
        # The claim's root is mounted at MODELS_DIR, so pvc://claim/llama/8b is /models/llama/8b:
        # the path the launcher gives vLLM (launcher.resolve_model).
        claim = source.removeprefix("pvc://").split("/", 1)[0]
        volumes.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "model", "mountPath": contract.MODELS_DIR, "readOnly": True})
    return volumes, mounts


def _env(spec: InferenceServiceSpec, plan: Plan, ref: ServiceRef) -> list[dict[str, Any]]:
    config = worker_config(spec, plan, ref)
    env: list[dict[str, Any]] = [
        {"name": contract.CONFIG_ENV, "value": json.dumps(config, sort_keys=True)},
        {"name": "HF_HOME", "value": MODEL_CACHE_DIR},
        {"name": "HOME", "value": HOME_DIR},
        {"name": "XDG_CACHE_HOME", "value": f"{HOME_DIR}/.cache"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{HOME_DIR}/.cache/vllm"},
    ]
    # Secrets reach the container only as references, never as values in the Deployment.
    for env_name, ref_ in (
        ("HF_TOKEN", spec.secrets.hub_token),
        (contract.API_KEY_ENV, spec.secrets.api_key),
    ):
        if ref_ is not None:
            env.append(
                {
                    "name": env_name,
                    "valueFrom": {"secretKeyRef": {"name": ref_.name, "key": ref_.key}},
                }
            )
    return env


def _container(
    spec: InferenceServiceSpec, plan: Plan, ref: ServiceRef, mounts: list[Any]
) -> Manifest:
    gpus = str(plan.tensor_parallel)  # per pod: a multi-node replica is one pod per node
    resources = spec.resources
    return {
        "name": names.WORKER_CONTAINER,
        "image": spec.engine.image,
        "command": list(contract.WORKER_ENTRYPOINT),
        "args": [
            "--engine",
            "vllm",
            "--port",
            str(contract.GATEWAY_PORT),
            # Finish queued and in-flight requests before the kubelet's SIGKILL.
            "--drain-grace",
            str(DRAIN_GRACE_SECONDS - PRESTOP_SLEEP_SECONDS - 10),
        ],
        "ports": [{"name": names.PORT_NAME, "containerPort": contract.GATEWAY_PORT}],
        "env": _env(spec, plan, ref),
        "resources": {
            "requests": {
                "cpu": resources.cpu,
                "memory": resources.memory,
                names.GPU_RESOURCE: gpus,
                # The scheduler places the replica where its download fits on the node's disk.
                **_ephemeral(model_cache_size(spec, plan)),
            },
            "limits": {"memory": resources.memory, names.GPU_RESOURCE: gpus},
        },
        "volumeMounts": mounts,
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        # Pod Security Admission "restricted" (pod_security.py).
        "securityContext": restricted_container(),
        **probes(spec, plan),
    }


def _affinity(spec: InferenceServiceSpec, plan: Plan, placement: GpuPlacement) -> Manifest:
    """The user's affinity with the GPU requirement added to every required node term: terms
    are ORed, expressions within a term ANDed, so each term must also demand the GPU kind."""
    affinity: dict[str, Any] = (
        spec.resources.affinity.model_dump(by_alias=True, exclude_none=True)
        if spec.resources.affinity
        else {}
    )
    node = affinity.setdefault("nodeAffinity", {})
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    gpu = placement.requirement(plan.gpu)
    required["nodeSelectorTerms"] = [
        {**term, "matchExpressions": [*term.get("matchExpressions", []), gpu]} for term in terms
    ]
    return affinity


def _tolerations(spec: InferenceServiceSpec, placement: GpuPlacement) -> list[Manifest]:
    own = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.resources.tolerations]
    return own + [t for t in placement.tolerations() if t not in own]


def _pod_spec(
    spec: InferenceServiceSpec, plan: Plan, ref: ServiceRef, placement: GpuPlacement
) -> Manifest:
    volumes, mounts = _volumes(spec, plan, ref)
    pod: dict[str, Any] = {
        "containers": [_container(spec, plan, ref, mounts)],
        "volumes": volumes,
        "affinity": _affinity(spec, plan, placement),
        "terminationGracePeriodSeconds": DRAIN_GRACE_SECONDS,
        "enableServiceLinks": False,
        # The worker never calls the Kubernetes API: no ServiceAccount token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod(),
    }
    if model_cache.enabled(spec):
        pod["initContainers"] = [model_cache.wait_container(spec)]
    if spec.resources.node_selector:
        pod["nodeSelector"] = dict(sorted(spec.resources.node_selector.items()))
    tolerations = _tolerations(spec, placement)
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.resources.priority_class_name:
        pod["priorityClassName"] = spec.resources.priority_class_name
    return pod


def make_deployment(
    ref: ServiceRef,
    spec: InferenceServiceSpec,
    plan: Plan,
    scrape_annotations: bool,
    placement: GpuPlacement = DEFAULT_PLACEMENT,
) -> Manifest:
    """The worker Deployment. `replicas` is deliberately absent: the replica count belongs to the
    scale subresource (the autoscaler), so re-applying the spec never resets it."""
    template_meta = _template_metadata(ref, scrape_annotations, None)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ref, names.deployment_name(ref)),
        "spec": {
            "selector": {"matchLabels": names.selector_labels(ref)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": template_meta,
                "spec": _pod_spec(spec, plan, ref, placement),
            },
        },
    }


# LeaderWorkerSet (sigs.k8s.io/lws v0.7.0, api/leaderworkerset/v1/leaderworkerset_types.go).
LWS_API_VERSION = LEADER_WORKER_SET.api_version
LWS_WORKER_INDEX_LABEL = WORKER_INDEX_LABEL
ROLE_LABEL = "tokenscale.io/role"


def _template_metadata(ref: ServiceRef, scrape_annotations: bool, role: str | None) -> Manifest:
    meta: dict[str, Any] = {"labels": names.labels(ref)}
    if role is not None:
        meta["labels"][ROLE_LABEL] = role
    if scrape_annotations:
        meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(contract.GATEWAY_PORT),
            "prometheus.io/path": "/metrics",
        }
    return meta


def make_leaderworkerset(
    ref: ServiceRef,
    spec: InferenceServiceSpec,
    plan: Plan,
    scrape_annotations: bool,
    placement: GpuPlacement = DEFAULT_PLACEMENT,
) -> Manifest:
    """A multi-node replica per group: `plan.nodes` pods of `plan.tensor_parallel` GPUs, the
    leader (worker index 0) serving behind its gateway, the workers headless (the worker image
    picks its role from LWS_WORKER_INDEX). `replicas` is absent for the same reason as in the
    Deployment: the scale subresource (groups) belongs to the autoscaler.

    - startupPolicy LeaderCreated: the workers start with the leader, which cannot become ready
      before every rank has joined its rendezvous (LeaderReady would wait forever).
    - restartPolicy RecreateGroupOnPodRestart: one lost rank breaks the whole pipeline, so the
      group restarts together.
    - rollingUpdateConfiguration and networkConfig are spelled out: LWS's controller reads them
      and only its own mutating webhook would default them. maxUnavailable is 1, not the
      Deployment's 0: LWS v0.7.0 copies it into the leader StatefulSet, which Kubernetes 1.37
      (StatefulSet maxUnavailable on by default) refuses at 0, so no group would ever be
      created (kubernetes-sigs/lws#776). maxSurge 1 still adds the new group before one goes."""
    leader = _pod_spec(spec, plan, ref, placement)
    worker = _pod_spec(spec, plan, ref, placement)
    container = worker["containers"][0]
    for key in ("ports", "readinessProbe", "livenessProbe", "startupProbe", "lifecycle"):
        container.pop(key, None)  # a headless rank serves nothing to probe or drain
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": _metadata(ref, names.deployment_name(ref)),
        "spec": {
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"partition": 0, "maxUnavailable": 1, "maxSurge": 1},
            },
            "networkConfig": {"subdomainPolicy": "Shared"},
            "leaderWorkerTemplate": {
                "size": plan.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {
                    "metadata": _template_metadata(ref, scrape_annotations, "leader"),
                    "spec": leader,
                },
                "workerTemplate": {
                    "metadata": _template_metadata(ref, False, "worker"),
                    "spec": worker,
                },
            },
        },
    }


def leader_selector(ref: ServiceRef, plan: Plan) -> dict[str, str]:
    """The pods that serve: every pod of a single-node replica, the leaders of groups."""
    selector = names.selector_labels(ref)
    return selector if plan.nodes == 1 else {**selector, LWS_WORKER_INDEX_LABEL: "0"}


def render_all(
    ref: ServiceRef,
    spec: InferenceServiceSpec,
    plan: Plan,
    concurrency_cap: int,
    podmonitor_available: bool,
    placement: GpuPlacement = DEFAULT_PLACEMENT,
) -> list[Manifest]:
    """Every child, in apply order (the ConfigMap first: pods mount it). A multi-node plan
    (`plan.nodes` > 1) gets a LeaderWorkerSet in place of the Deployment, and the Service and
    PodMonitor select the group leaders, the only pods that serve."""
    # The model cache's claim and fill Job before the workload whose pods mount the claim.
    cache = [model_cache.make_claim(ref, spec, plan), model_cache.make_fill_job(ref, spec)]
    scrape = not podmonitor_available
    workload = (
        make_deployment(ref, spec, plan, scrape_annotations=scrape, placement=placement)
        if plan.nodes == 1
        else make_leaderworkerset(ref, spec, plan, scrape_annotations=scrape, placement=placement)
    )
    serving = leader_selector(ref, plan)
    children = [
        *[c for c in cache if c is not None],
        make_configmap(ref, concurrency_cap),
        workload,
        make_service(ref, serving),
        make_pdb(ref),
    ]
    if podmonitor_available:
        children.append(make_podmonitor(ref, serving))
    return children

"""Lifecycle: observe the InferenceService, plan and render (pure), apply, report status.

Children are server-side applied with owner references; deletion is left to the garbage
collector. Only the status subresource of the InferenceService is ever written.

A reconcile with nothing to change sends one request (the list of the service's pods): a child
still holding what was applied is not applied again (`Kube.apply`), the Deployment comes from the
watch, and a status with nothing new is not written.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from tokenscale.adapters import logs, metrics
from tokenscale.adapters.kube import Kube
from tokenscale.api.v1alpha1 import GROUP, PLURAL, VERSION, InferenceServiceSpec
from tokenscale.domain import (
    capacity,
    lifecycle,
    model_cache,
    names,
    placement,
    render,
    status,
    workload,
)
from tokenscale.domain.autoscale import status_changed
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.probes import cold_start_seconds
from tokenscale.handlers import runtime
from tokenscale.handlers.runtime import Registry

log = logging.getLogger(__name__)


def service_ref(body: kopf.Body | dict[str, Any]) -> ServiceRef:
    meta = body["metadata"]
    return ServiceRef(
        meta["name"], meta["namespace"], meta.get("uid", ""), meta.get("generation", 0)
    )


def reconcile(reg: Registry, body: kopf.Body | dict[str, Any]) -> None:
    """Bring one InferenceService's children and status in line with its spec. The status is
    written only onto the version `body` was read at; when the stored object is newer (409),
    once more from a fresh read."""
    try:
        _reconcile(reg, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        meta = body["metadata"]
        fresh = reg.kube().get_service(meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        reg.watched.put_service((meta["namespace"], meta["name"]), fresh)
        _reconcile(reg, fresh)


def reconcile_latest(reg: Registry, namespace: str, name: str, fresh: bool = False) -> None:
    """Reconcile from the watch's copy of the service (a read only when the watch has not
    reported it yet, or with `fresh`); nothing when it is gone or going."""
    body = None if fresh else reg.watched.service((namespace, name))
    body = body or reg.kube().get_service(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    reconcile(reg, body)


def _reconcile(reg: Registry, body: kopf.Body | dict[str, Any]) -> None:
    kube, ref = reg.kube(), service_ref(body)
    version = body["metadata"].get("resourceVersion")
    old_status: dict[str, Any] = dict(body.get("status") or {})
    conds: status.Conditions = list(old_status.get("conditions") or [])
    now = runtime.now_rfc3339()
    spec = lifecycle.parse_spec(dict(body["spec"]))
    if isinstance(spec, lifecycle.SpecError):
        return _report_unusable(reg, ref, old_status, conds, now, spec.message, version)
    result = capacity.plan(spec, multi_node=has_leaderworkerset(kube))
    if isinstance(result, capacity.Infeasible):
        return _report_unusable(reg, ref, old_status, conds, now, result, version)
    conds = status.planned_conditions(conds, result, now, ref.generation)
    cap = lifecycle.concurrency_cap(spec, result, old_status)
    podmonitor = kube.has_resource("monitoring.coreos.com/v1", "PodMonitor")
    gpu_nodes = placement.from_env(os.environ)
    for child in render.render_all(ref, spec, result, cap, podmonitor, gpu_nodes):
        kube.apply(child)
    kind = workload.kind_for(result)
    deployment = _workload(reg, ref, kind)
    current = None if deployment is None else (deployment["spec"].get("replicas"))
    fill = fill_state(reg, ref, spec)
    gate = model_cache.fill_gate(fill, current or 0)
    target = lifecycle.bounded_replicas(spec, current if deployment else None, gate)
    own_write = None if target is None else lifecycle.autoscaler_after_scale(old_status, target)
    if target is not None:
        kube.scale(ref, names.deployment_name(ref), target, kind)
        if deployment is None:
            deployment = kube.get_workload(ref.namespace, names.deployment_name(ref), kind)
        else:
            deployment = {**deployment, "spec": {**deployment["spec"], "replicas": target}}
    pods = kube.list_pods(ref.namespace, names.selector_labels(ref))
    state = lifecycle.workload_state(deployment, pods)
    conds = status.workload_conditions(conds, state, now, ref.generation)
    limited = {"type": "CapacityLimited", "status": "True"}
    warn_on_entering(kube, ref, old_status, conds, limited, status.Event.CAPACITY_LIMITED)
    if fill is not None:
        conds = status.model_cache_conditions(
            conds,
            fill.phase,
            fill.message,
            model_cache.claim_name(ref, spec),
            model_cache.key(spec),
            gate if gate is not None else state.replicas,
            now,
            ref.generation,
        )
        failed = {"type": "ModelCached", "reason": "FillFailed"}
        warn_on_entering(kube, ref, old_status, conds, failed, status.Event.MODEL_FILL_FAILED)
    plan = {**status.plan_status(result, cap), "coldStartSeconds": cold_start_seconds(spec, result)}
    patch: dict[str, Any] = {
        "observedGeneration": ref.generation,
        "conditions": conds,
        "replicas": state.current,
        "readyReplicas": state.ready,
        "desiredReplicas": old_status.get("desiredReplicas") or state.replicas,
        "plan": plan,
    }
    if own_write is not None:
        patch["autoscaler"] = own_write
    _write_status(reg, ref, old_status, patch, version)


def fill_state(
    reg: Registry, ref: ServiceRef, spec: InferenceServiceSpec
) -> model_cache.FillState | None:
    """The model cache fill's state from the watch's copy of its Job (a read, kept, before the
    watch saw it); None when the service has no model cache."""
    if not model_cache.enabled(spec):
        return None
    key, name = (ref.namespace, ref.name), model_cache.fill_job_name(ref, spec)
    job = reg.watched.job(key, name)
    if job is None:
        job = reg.kube().get_job(ref.namespace, name)
        if job is not None:
            reg.watched.put_job(key, name, job)
            job = reg.watched.job(key, name)
    return model_cache.fill_state(job, name)


def has_leaderworkerset(kube: Kube) -> bool:
    """Whether the cluster serves LeaderWorkerSet, which multi-node replicas need (the answer is
    kept a minute: a LeaderWorkerSet installed later is seen within one)."""
    return kube.has_resource(
        workload.LEADER_WORKER_SET.api_version, workload.LEADER_WORKER_SET.kind
    )


def _workload(reg: Registry, ref: ServiceRef, kind: workload.WorkloadKind) -> dict[str, Any] | None:
    """The watch's copy of the service's Deployment or LeaderWorkerSet; a read (kept) before
    the watch saw it. A copy of the other kind (the plan changed between one node and several)
    is not this workload."""
    key = (ref.namespace, ref.name)
    found = reg.watched.deployment(key)
    if found is not None and found.get("kind") not in (None, kind.kind):
        found = None
    if found is None:
        found = reg.kube().get_workload(ref.namespace, names.deployment_name(ref), kind)
        if found is not None:
            reg.watched.put_deployment(key, found)
            found = reg.watched.deployment(key)
    return found


def _write_status(
    reg: Registry,
    ref: ServiceRef,
    old_status: dict[str, Any],
    patch: dict[str, Any],
    version: str | None,
) -> None:
    """Write what is new, onto the version it was computed from (the autoscaler writes
    conditions too, and a merge patch replaces the whole list)."""
    if not status_changed(old_status, patch):
        return
    stored = reg.kube().patch_status(ref, patch, resource_version=version)
    reg.watched.merge_service_status((ref.namespace, ref.name), patch, stored)


def _report_unusable(
    reg: Registry,
    ref: ServiceRef,
    old_status: dict[str, Any],
    conds: status.Conditions,
    now: str,
    problem: capacity.Infeasible | str,
    version: str | None,
) -> None:
    """Ready=False with the reason, one Warning Event per new reason, nothing created, and no
    exception: kopf must not retry a spec only a person can fix."""
    conds = status.unusable_conditions(conds, problem, now, ref.generation)
    ready = next(c for c in conds if c["type"] == "Ready")
    already = any(
        c.get("type") == "Ready" and c.get("message") == ready["message"]
        for c in old_status.get("conditions") or []
    )
    patch = {"observedGeneration": ref.generation, "conditions": conds}
    _write_status(reg, ref, old_status, patch, version)
    if not already:
        reg.kube().event(ref, *status.unusable_event(problem))
        log.warning("%s", ready["message"], extra=logs.about(ref.namespace, ref.name))


def warn_on_entering(
    kube: Kube,
    ref: ServiceRef,
    old_status: dict[str, Any],
    conds: status.Conditions,
    state: dict[str, str],
    event: status.Event,
) -> None:
    """One Warning Event (and log line) when a condition enters `state` (e.g. {"type":
    "CapacityLimited", "status": "True"}), not on every reconcile that finds it there."""

    def matches(c: dict[str, Any]) -> bool:
        return all(c.get(k) == v for k, v in state.items())

    was = any(matches(c) for c in old_status.get("conditions") or [])
    now = next((c for c in conds if c["type"] == state["type"]), None)
    if now and matches(now) and not was:
        message = now["message"]
        kube.event(ref, *status.event_message(event, message=message))
        log.warning("%s", message, extra=logs.about(ref.namespace, ref.name))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_service(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Create, spec change, or operator restart: after any reconcile of this service already
    under way, with this body (the newest copy); kopf retries it when it fails."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    reg = runtime.registry(memo)
    reg.watched.put_service(key, dict(body))
    with metrics.RECONCILE_SECONDS.time():
        reg.reconciles.reconcile_once(
            key,
            lambda: reconcile(reg, body),
            lambda: reconcile_latest(reg, *key),
            wait=True,
        )

"""Lifecycle: observe the InferenceService, plan and render (pure), apply, report status.

Children are server-side applied with owner references; deletion is left to the garbage
collector. Only the status subresource of the InferenceService is ever written.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from tokenscale.adapters import logs, metrics
from tokenscale.adapters.kube import Kube
from tokenscale.api.v1alpha1 import GROUP, PLURAL, VERSION
from tokenscale.domain import capacity, lifecycle, names, placement, render, status
from tokenscale.domain.names import ServiceRef
from tokenscale.handlers import runtime

log = logging.getLogger(__name__)


def service_ref(body: kopf.Body | dict[str, Any]) -> ServiceRef:
    meta = body["metadata"]
    return ServiceRef(
        meta["name"], meta["namespace"], meta.get("uid", ""), meta.get("generation", 0)
    )


def reconcile(kube: Kube, body: kopf.Body | dict[str, Any]) -> None:
    """Bring one InferenceService's children and status in line with its spec."""
    ref = service_ref(body)
    old_status: dict[str, Any] = dict(body.get("status") or {})
    conds: status.Conditions = list(old_status.get("conditions") or [])
    now = runtime.now_rfc3339()
    spec = lifecycle.parse_spec(dict(body["spec"]))
    if isinstance(spec, lifecycle.SpecError):
        return _report_unusable(kube, ref, old_status, conds, now, spec.message)
    result = capacity.plan(spec)
    if isinstance(result, capacity.Infeasible):
        return _report_unusable(kube, ref, old_status, conds, now, result)
    conds = status.planned_conditions(conds, result, now, ref.generation)
    cap = lifecycle.concurrency_cap(spec, result, old_status)
    podmonitor = kube.has_resource("monitoring.coreos.com/v1", "PodMonitor")
    gpu_nodes = placement.from_env(os.environ)
    for child in render.render_all(ref, spec, result, cap, podmonitor, gpu_nodes):
        kube.apply(child)
    deployment = kube.get_deployment(ref.namespace, names.deployment_name(ref))
    current = None if deployment is None else (deployment["spec"].get("replicas"))
    target = lifecycle.bounded_replicas(spec, current if deployment else None)
    if target is not None:
        kube.scale(ref, names.deployment_name(ref), target)
        deployment = kube.get_deployment(ref.namespace, names.deployment_name(ref))
    pods = kube.list_pods(ref.namespace, names.selector_labels(ref))
    workload = lifecycle.workload_state(deployment, pods)
    conds = status.workload_conditions(conds, workload, now, ref.generation)
    _warn_on_new_capacity_limit(kube, ref, old_status, conds)
    kube.patch_status(
        ref,
        {
            "observedGeneration": ref.generation,
            "conditions": conds,
            "replicas": workload.current,
            "readyReplicas": workload.ready,
            "desiredReplicas": old_status.get("desiredReplicas") or workload.replicas,
            "plan": status.plan_status(result, cap),
        },
    )


def _report_unusable(
    kube: Kube,
    ref: ServiceRef,
    old_status: dict[str, Any],
    conds: status.Conditions,
    now: str,
    problem: capacity.Infeasible | str,
) -> None:
    """Ready=False with the reason, one Warning Event per new reason, nothing created, and no
    exception: kopf must not retry a spec only a person can fix."""
    conds = status.unusable_conditions(conds, problem, now, ref.generation)
    ready = next(c for c in conds if c["type"] == "Ready")
    already = any(
        c.get("type") == "Ready" and c.get("message") == ready["message"]
        for c in old_status.get("conditions") or []
    )
    kube.patch_status(ref, {"observedGeneration": ref.generation, "conditions": conds})
    if not already:
        kube.event(ref, *status.unusable_event(problem))
        log.warning("%s", ready["message"], extra=logs.about(ref.namespace, ref.name))


def _warn_on_new_capacity_limit(
    kube: Kube, ref: ServiceRef, old_status: dict[str, Any], conds: status.Conditions
) -> None:
    was = any(
        c.get("type") == "CapacityLimited" and c.get("status") == "True"
        for c in old_status.get("conditions") or []
    )
    now = next((c for c in conds if c["type"] == "CapacityLimited"), None)
    if now and now["status"] == "True" and not was:
        message = now["message"]
        kube.event(ref, *status.event_message(status.Event.CAPACITY_LIMITED, message=message))
        log.warning("%s", message, extra=logs.about(ref.namespace, ref.name))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_service(body: kopf.Body, **_: Any) -> None:
    """Create, spec change, or operator restart."""
    meta = body["metadata"]
    with runtime.lock_for(meta["namespace"], meta["name"]), metrics.RECONCILE_SECONDS.time():
        reconcile(runtime.kube(), body)

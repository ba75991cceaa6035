"""The autoscale loop: one loop for all services. Each tick: observe (a fixed number of PromQL
queries, cached cluster state) → decide() per service → apply (scale subresource, tuning
ConfigMap, status, Events)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from tokenscale.adapters import logs, metrics
from tokenscale.adapters.kube import Kube
from tokenscale.adapters.prometheus import PrometheusSignals, PrometheusUnavailableError
from tokenscale.adapters.settings import AutoscaleSettings
from tokenscale.domain import autoscale, capacity, lifecycle, names, render, slo_reach, workload
from tokenscale.domain.observation import Decision, Observation, ScalerState
from tokenscale.domain.scaling import decide
from tokenscale.domain.scaling_constants import CONSTANTS, ScalingConstants, for_window
from tokenscale.domain.signals import ServiceKey, ServiceSignals, to_observation
from tokenscale.domain.status import Event, MetricsOutage, event_message
from tokenscale.handlers import runtime
from tokenscale.handlers.lifecycle import (
    fill_state,
    has_leaderworkerset,
    service_ref,
    warn_on_entering,
)
from tokenscale.handlers.runtime import Registry

log = logging.getLogger(__name__)
# A failure that repeats every tick is logged (with its traceback) when it starts or changes.
FAILURES = logs.ErrorStates(log)


def tick(reg: Registry, source: PrometheusSignals, settings: AutoscaleSettings) -> None:
    """One tick for every known service."""
    started, now = time.monotonic(), time.time()
    kube, services = reg.kube(), reg.watched.services()
    sent_before = source.queries_sent
    outage: MetricsOutage | None = None
    try:
        signals = source.fetch()
    except PrometheusUnavailableError as exc:  # the adapter logs each change of state once
        signals, outage = {}, exc.outage
        metrics.QUERY_ERRORS.inc()
    nodes = kube.gpu_nodes() if settings.capacity_aware else None
    constants = for_window(settings.window_seconds)

    def one(item: tuple[ServiceKey, dict[str, Any]]) -> None:
        key, body = item
        try:
            tick_service(reg, key, body, signals.get(key), outage, nodes, now, constants)
        except Exception as exc:  # one bad service must not stop the others
            FAILURES.failed(key, exc, "autoscale tick failed for %s/%s", *key)
        else:
            FAILURES.recovered(key, "autoscale tick for %s/%s works again", *key)

    # The decisions are milliseconds; the writes are round trips. When every service has news
    # (Prometheus just went away: MetricsAvailable flips on all 300) they overlap.
    list(reg.writers().map(one, services.items()))
    metrics.SERVICES.set(len(services))
    metrics.QUERIES_PER_TICK.set(source.queries_sent - sent_before)
    metrics.TICK_SECONDS.observe(time.monotonic() - started)


def tick_service(
    reg: Registry,
    key: ServiceKey,
    body: dict[str, Any],
    signals: ServiceSignals | None,
    outage: MetricsOutage | None,
    nodes: list[autoscale.GpuNode] | None,
    now: float,
    constants: ScalingConstants = CONSTANTS,
) -> None:
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        # Being deleted: its children go with it, and a namespace being deleted refuses new
        # Events (403) while its workload is already gone (404 on the scale subresource).
        return
    spec = lifecycle.parse_spec(dict(body.get("spec") or {}))
    kube, deployment = reg.kube(), reg.watched.deployment(key)
    plan = (
        None
        if isinstance(spec, lifecycle.SpecError)
        else capacity.plan(spec, multi_node=has_leaderworkerset(kube))
    )
    if (
        isinstance(spec, lifecycle.SpecError)
        or not isinstance(plan, capacity.Plan)
        or not deployment
        or deployment.get("kind") not in (None, workload.kind_for(plan).kind)
    ):
        return  # the lifecycle handler reports why; nothing to scale yet
    ref, status = service_ref(body), dict(body.get("status") or {})
    version = (body.get("metadata") or {}).get("resourceVersion")
    state = ScalerState.from_dict(status.get("autoscaler"))
    replicas = int(deployment["spec"].get("replicas") or 0)
    last_applied = (status.get("autoscaler") or {}).get("lastAppliedReplicas")
    writer = autoscale.foreign_replica_writer(deployment, last_applied)
    if writer and not autoscale.conflict_resolved(status, replicas, now):
        patch = autoscale.conflict_status(status, writer, replicas, now, ref.generation)
        _write_status(reg, key, ref, patch, version)
        return
    # One pod per replica: a group counts once, through its leader.
    pods = workload.serving_pods(reg.watched.pods(key))
    placed = sum(1 for p in pods if (p.get("spec") or {}).get("nodeName"))
    schedulable = None if nodes is None else autoscale.schedulable_replicas(nodes, plan, placed)
    cap_now = (status.get("plan") or {}).get("concurrencyCap")
    facts = autoscale.workload_facts(deployment, pods, cap_now, schedulable)
    reach = None
    if outage is None:
        reach = slo_reach.reach(spec, plan, (signals or ServiceSignals()).prompt_buckets)
    observation = (
        Observation(
            current_replicas=facts.current_replicas,
            ready_replicas=facts.ready_replicas,
            current_cap=cap_now,
            schedulable_replicas=schedulable,
        )
        if reach is None
        else to_observation(
            signals or ServiceSignals(), spec.slo.percentile, facts, reach.share_out_of_reach
        )
    )
    fill = fill_state(reg, ref, spec)
    if fill is not None and fill.phase != "Complete":
        observation = dataclasses.replace(observation, model_filling=True)
    decision = decide(spec, plan, observation, state, now, constants=constants)
    patch = autoscale.tick_status(
        spec, status, decision, observation, now, ref.generation, outage, reach
    )
    if _write_status(reg, key, ref, patch, version):
        out_of_reach = {"type": "SLOFeasible", "status": "False"}
        warn_on_entering(
            kube, ref, status, patch["conditions"], out_of_reach, Event.SLO_OUT_OF_REACH
        )
        _log_decision(ref, autoscale.new_decision(status, patch), decision.mode)
        kind = workload.kind_for(plan)
        _act(kube, ref, kind, decision, replicas, cap_now, status.get("desiredReplicas"))
    _count(key, decision, replicas)


def _log_decision(ref: names.ServiceRef, record: dict[str, Any] | None, mode: str) -> None:
    """One line per decision that changed something (the ones status.lastDecisions keeps)."""
    if record is None:
        return
    fields = {k: record.get(k) for k in ("replicas", "previousReplicas", "concurrencyCap")}
    log.info(
        "%s (%s mode, replicas %d, cap %d)",
        record["reason"],
        mode,
        record["replicas"],
        record["concurrencyCap"],
        extra=logs.about(ref.namespace, ref.name, **fields, mode=mode, reason=record["reason"]),
    )


def _act(
    kube: Kube,
    ref: names.ServiceRef,
    kind: workload.WorkloadKind,
    decision: Decision,
    replicas: int,
    cap_now: Any,
    previous_desired: int | None,
) -> None:
    if decision.mode == "advisory":
        if autoscale.announce_recommendation(decision.replicas, replicas, previous_desired):
            kube.event(ref, *event_message(Event.RECOMMENDATION, reason=decision.reason))
        return
    if not decision.applied:
        return
    if decision.replicas != replicas:
        kube.scale(ref, names.deployment_name(ref), decision.replicas, kind)
        event = Event.SCALED_UP if decision.replicas > replicas else Event.SCALED_DOWN
        kube.event(ref, *event_message(event, reason=decision.reason))
    if decision.concurrency_cap != cap_now:
        kube.apply(render.make_configmap(ref, decision.concurrency_cap))


def _write_status(
    reg: Registry,
    key: ServiceKey,
    ref: names.ServiceRef,
    patch: dict[str, Any],
    version: str | None,
) -> bool:
    """Write the patch computed from the cached object at `version`, only onto that version: the
    lifecycle handler writes `conditions` too, and a merge patch replaces the whole list, so a
    patch from a stale copy would drop its Planned/Ready. On a conflict (False) nothing is
    acted on: the decision's state (lastAppliedReplicas) was not saved, and the next tick
    decides again from the fresh copy the watch brings."""
    current = (reg.watched.service(key) or {}).get("status") or {}
    if not autoscale.status_changed(current, patch):
        return True
    try:
        with reg.reconciles.lock_for(ref.namespace, ref.name):
            stored = reg.kube().patch_status(ref, patch, resource_version=version)
            # Under the lock: the cached version is the one this write stored, not one a
            # reconcile stored between the write and the merge.
            reg.watched.merge_service_status(key, patch, stored)
    except ApiException as exc:
        if exc.status == 404:
            # Deleted after the watch's copy was read: the DELETED event is on its way.
            log.debug("%s/%s is gone; nothing to write", *key)
            return False
        if exc.status != 409:
            raise
        log.debug("status of %s/%s changed since it was read; next tick", *key)
        return False
    return True


def _count(key: ServiceKey, decision: Decision, replicas: int) -> None:
    kind = "hold"
    if decision.replicas > replicas:
        kind = "scale_up"
    elif decision.replicas < replicas:
        kind = "scale_down"
    metrics.DECISIONS.labels(kind=kind, mode=decision.mode).inc()
    metrics.DESIRED.labels(*key).set(decision.replicas)
    metrics.CURRENT.labels(*key).set(replicas)
    metrics.CAP.labels(*key).set(decision.concurrency_cap)


async def run_loop(settings: AutoscaleSettings, reg: Registry) -> None:
    source = PrometheusSignals(
        settings.prometheus_url, settings.window, settings.timeout_seconds, settings.namespaces
    )
    while True:
        started = time.monotonic()
        try:
            await asyncio.to_thread(tick, reg, source, settings)
        except Exception as exc:
            FAILURES.failed("tick", exc, "autoscale tick failed")
        else:
            FAILURES.recovered("tick", "autoscale ticks work again")
        await asyncio.sleep(max(0.0, settings.interval_seconds - (time.monotonic() - started)))


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    settings = AutoscaleSettings.from_env()
    if settings.enabled:
        memo["autoscaler"] = asyncio.create_task(run_loop(settings, runtime.registry(memo)))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("autoscaler")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

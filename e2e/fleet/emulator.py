"""The fleet emulator: kubelet, Service and PodMonitor for tokenscale worker pods on a cluster
whose nodes are fake (kwok), so that the operator meets real engines and a real Prometheus.

For each running worker pod in the watched namespaces it runs a local worker (`workers.py`) on the
simulator or on real vLLM's CPU build; it relays the pod's tuning ConfigMap into the file the
worker polls, as the kubelet refreshes a mounted ConfigMap; it writes Prometheus file-based
service discovery targets labelled `namespace`, `pod` and `tokenscale_io_service` (what a
PodMonitor with `podTargetLabels` gives); and it keeps a round-robin front per service
(`front.py`). A pod that goes away is taken out of the front and discovery at once, then gets
SIGTERM after a preStop pause, and its worker drains before it exits.

kwok marks a pod Ready the moment it runs. With `report_readiness` (on for vLLM workers, whose
start takes a minute, and for every pod with init containers) the emulator reports readiness as a
kubelet does instead: the pod's Ready condition is False until its init containers have exited 0
and the worker's startup and readiness probes pass, and follows the readiness probe after that, so
the operator sees a starting replica as starting.

Pods that run to an end (the model cache's fill Jobs, label tokenscale.io/model-fill, which kwok's
stages leave Running) and init containers run as local processes (`containers.py`); a fill pod's
exit is reported as phase Succeeded or Failed, which the real Job controller counts.

State for tests and people goes to `state.json` in the work directory on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.fleet.cluster import FILL_LABEL, SERVICE_LABEL, ClusterView, Snapshot, running
from e2e.fleet.containers import PodNotRunnableError, local_container, run_to_completion
from e2e.fleet.front import Front
from e2e.fleet.probes import PodProbes, watch
from e2e.fleet.workers import Engine, WorkerProcess, WorkerSpec
from tokenscale.domain.workload import is_serving
from tokenscale_contract.model_cache import MODEL_CACHE_MOUNT
from tokenscale_worker.engine_profile import MODEL_CACHE_DIR_ENV

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class FleetOptions:
    namespaces: tuple[str, ...]
    work_dir: Path
    sd_file: Path
    kubeconfig: str | None = None
    time_scale: float = 1.0
    poll_interval_s: float = 0.5
    # The rendered pod's preStop sleep is 5 s; a local front drops the endpoint at once, so a
    # shorter pause is enough for requests already on their way to arrive.
    prestop_s: float = 1.0
    drain_grace_s: float = 120.0
    # The startup probe's period is multiplied by this (the simulator starts in about a second,
    # vLLM in minutes); paths, timeouts and thresholds apply as rendered.
    probe_period_scale: float = 0.1
    # Readiness and liveness run at the rendered periods, as a kubelet's do (at 300 workers that
    # is 90 probes a second; scaled down it would be the emulator's main load).
    watch_period_scale: float = 1.0
    engine: Engine = "sim"
    report_readiness: bool = False


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: readers (the worker's poller, Prometheus) never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Worker:
    process: WorkerProcess
    task: asyncio.Task[int] | None = None
    ready: bool = False
    watchers: list[asyncio.Task[None]] = field(default_factory=list)
    # Whether this pod's Ready condition is the emulator's to report (kwok's otherwise).
    report_readiness: bool = False


@dataclass
class Fleet:
    options: FleetOptions
    view: ClusterView = field(init=False)
    workers: dict[Key, Worker] = field(default_factory=dict)
    fronts: dict[Key, Front] = field(default_factory=dict)
    tuning: dict[Key, dict[str, Any]] = field(default_factory=dict)
    stopped: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[Key, str] = field(default_factory=dict)
    # What the kubelet's probes did: a readiness probe taking a pod out, a liveness restart.
    probe_events: list[dict[str, Any]] = field(default_factory=list)
    # Pods that run to an end (the model cache's fill Jobs), by pod, and how each ended.
    runs: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    run_results: list[dict[str, Any]] = field(default_factory=list)
    # Those still running: pod -> pid and start, so a test can say what a stuck one is doing.
    running_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    init_results: list[dict[str, Any]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.view = ClusterView(self.options.kubeconfig)
        self.options.work_dir.mkdir(parents=True, exist_ok=True)
        self.options.sd_file.parent.mkdir(parents=True, exist_ok=True)

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._publish()
        while not stop.is_set():
            for ns in self.options.namespaces:
                try:
                    snap = await asyncio.to_thread(self.view.snapshot, ns)
                    await self.sync(ns, snap)
                except Exception:
                    log.exception("fleet: syncing namespace %s failed; retrying", ns)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.poll_interval_s)
        await self.shutdown()

    async def sync(self, ns: str, snap: Snapshot) -> None:
        self._relay_tuning(ns, snap.tuning)
        live = [p for p in snap.pods if running(p)]
        for pod in live:
            if FILL_LABEL in (pod["metadata"].get("labels") or {}):
                key = (ns, pod["metadata"]["name"])
                if key not in self.runs:
                    self.runs[key] = asyncio.create_task(self._run_to_end(key, pod))
        # A multi-node group is served by its leader: the leader's process is the whole
        # group's engine (its profile spans the group's nodes), and a headless worker rank has
        # no gateway to start. kwok reports the workers Running and Ready, as a kubelet would a
        # pod without probes.
        wanted = {
            p["metadata"]["name"]: p
            for p in live
            if SERVICE_LABEL in (p["metadata"].get("labels") or {}) and is_serving(p)
        }
        for name, pod in wanted.items():
            key = (ns, name)
            if key not in self.workers and key not in self.failed:
                await self._start(key, pod, snap)
        for key in [k for k in self.workers if k[0] == ns and k[1] not in wanted]:
            self._begin_stop(key)

    # ---- tuning relay (kubelet ConfigMap refresh) -------------------------------------------

    def _tuning_path(self, ns: str, service: str) -> Path:
        path = self.options.work_dir / ns / service / "tuning.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _relay_tuning(self, ns: str, documents: dict[str, str]) -> None:
        for service, text in documents.items():
            key = (ns, service)
            if (self.tuning.get(key) or {}).get("text") == text:
                continue
            write_atomic(self._tuning_path(ns, service), text)
            self.tuning[key] = {"text": text, "writtenAt": time.time()}
            log.info("fleet: %s/%s tuning -> %s", ns, service, text)
            self._publish()

    # ---- pods that run to an end (fill Jobs) -------------------------------------------------

    async def _run_to_end(self, key: Key, pod: dict[str, Any]) -> None:
        """Run the pod's container and report its exit (phase Succeeded or Failed), as the
        kubelet of a restartPolicy Never pod; kwok's stages leave these pods Running for it.
        Any failure is logged and the pod left to the next poll: a task that died silently
        would keep its key in `runs`, and the pod would never run (or never end)."""
        try:
            await self._run_pod_to_end(key, pod)
        except Exception:
            log.exception("fleet: pod %s/%s failed to run to its end; the next poll retries", *key)
            await asyncio.sleep(1.0)
            self.runs.pop(key, None)

    async def _report_terminated(self, key: Key, pod: dict[str, Any], code: int) -> None:
        """The exit as the pod's status, retried: the API server may refuse a status write
        (a conflict, a slow answer) and the Job controller counts only what it sees."""
        for attempt in range(8):
            try:
                await asyncio.to_thread(self.view.set_pod_terminated, key[0], pod, code)
                return
            except Exception as err:
                log.warning(
                    "fleet: reporting pod %s/%s's exit %s failed (attempt %d): %s",
                    *key, code, attempt + 1, err,
                )  # fmt: skip
                await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
        raise RuntimeError(f"pod {key[0]}/{key[1]}: its exit {code} could not be reported")

    async def _run_pod_to_end(self, key: Key, pod: dict[str, Any]) -> None:
        started = time.time()
        log_path = self.options.work_dir / key[0] / "logs" / f"{key[1]}.log"
        container = pod["spec"]["containers"][0]
        try:
            local = await asyncio.to_thread(
                local_container, self.view, pod, container, self._scratch(key)
            )
            pod_id = f"{key[0]}/{key[1]}"

            def started_as(pid: int) -> None:
                self.running_runs[pod_id] = {"pid": pid, "startedAt": time.time()}
                self._publish()

            try:
                code = await run_to_completion(local, log_path, started_as)
            finally:
                self.running_runs.pop(pod_id, None)
        except PodNotRunnableError as err:
            # A kubelet would keep the pod waiting; the next poll tries again.
            log.warning("fleet: pod %s/%s cannot run yet: %s", *key, err)
            await asyncio.sleep(1.0)
            self.runs.pop(key, None)
            return
        await self._report_terminated(key, pod, code)
        job = (pod["metadata"].get("labels") or {}).get("job-name")
        self.run_results.append(
            {
                "namespace": key[0],
                "pod": key[1],
                "job": job,
                "exitCode": code,
                "startedAt": started,
                "endedAt": time.time(),
                "argv": local.argv,
            }
        )
        log.info("fleet: pod %s/%s ran to its end (exit %s)", *key, code)
        self._publish()

    def _scratch(self, key: Key) -> Path:
        """The pod's emptyDir volumes live here."""
        return self.options.work_dir / key[0] / "pods" / key[1]

    async def _init_containers(self, key: Key, pod: dict[str, Any]) -> dict[str, Path]:
        """Run the pod's init containers in order, each to exit 0, before its worker starts
        (the kubelet's order); the mounts of the main container, for its engine's paths."""
        for container in pod["spec"].get("initContainers") or []:
            local = await asyncio.to_thread(
                local_container, self.view, pod, container, self._scratch(key)
            )
            began = time.time()
            log_path = self.options.work_dir / key[0] / "logs" / f"{key[1]}.{container['name']}.log"
            code = await run_to_completion(local, log_path)
            self.init_results.append(
                {
                    "pod": key[1],
                    "container": container["name"],
                    "exitCode": code,
                    "startedAt": began,
                    "endedAt": time.time(),
                }
            )
            if code != 0:
                raise RuntimeError(f"init container {container['name']} exited with {code}")
        main = await asyncio.to_thread(
            local_container, self.view, pod, pod["spec"]["containers"][0], self._scratch(key)
        )
        return main.mounts

    # ---- workers ----------------------------------------------------------------------------

    async def _start(self, key: Key, pod: dict[str, Any], snap: Snapshot) -> None:
        service = pod["metadata"]["labels"][SERVICE_LABEL]
        spec = snap.services.get(service) or {}
        gpu = await asyncio.to_thread(self.view.gpu_of_node, pod["spec"]["nodeName"])
        gpu = gpu or (spec.get("resources") or {}).get("gpu")
        arch = (spec.get("model") or {}).get("architecture")
        wspec = WorkerSpec.from_pod(pod, gpu or "h100-80gb", arch)
        if wspec is None:
            self.failed[key] = "no worker config in the pod"
            return
        logs = self.options.work_dir / key[0] / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        process = WorkerProcess(
            wspec,
            logs / f"{key[1]}.log",
            probes=PodProbes.from_pod(pod),
            probe_period_scale=self.options.probe_period_scale,
            engine=self.options.engine,
        )
        has_init = bool(pod["spec"].get("initContainers"))
        worker = Worker(process, report_readiness=self.options.report_readiness or has_init)
        self.workers[key] = worker
        if worker.report_readiness:
            await self._report_ready(key, False, "the worker is starting")
        tuning = self._tuning_path(key[0], service)

        async def boot() -> int:
            mounts = await self._init_containers(key, pod)
            cache = mounts.get(MODEL_CACHE_MOUNT)
            if cache is not None:  # the cpu-test profile's stand-in for the pod's mount
                process.env[MODEL_CACHE_DIR_ENV] = str(cache)
            return await process.start(tuning, self.options.time_scale, self.options.drain_grace_s)

        worker.task = asyncio.create_task(boot())
        worker.task.add_done_callback(lambda t: self._started(key, t))

    def _started(self, key: Key, task: asyncio.Task[int]) -> None:
        worker = self.workers.get(key)
        if worker is None or task.cancelled():
            return
        if task.exception() is not None:
            log.error("fleet: worker %s/%s failed to start: %s", *key, task.exception())
            self.failed[key] = str(task.exception())
            self.workers.pop(key, None)
            return
        worker.ready = True
        log.info("fleet: worker %s/%s ready on port %s", *key, worker.process.port)
        self._watch_probes(key, worker)
        self._publish()
        if worker.report_readiness:
            self._spawn(self._report_ready(key, True, None))

    async def _report_ready(self, key: Key, ready: bool, why: str | None) -> None:
        """The pod's Ready condition, as the kubelet writes it from the probes."""
        try:
            await asyncio.to_thread(self.view.set_pod_ready, key[0], key[1], ready, why)
        except Exception:
            # A pod deleted meanwhile; anything else shows in the log and the next probe retries.
            log.warning("fleet: reporting %s/%s Ready=%s failed", *key, ready, exc_info=True)

    def _watch_probes(self, key: Key, worker: Worker) -> None:
        """Readiness takes the pod out of the front and discovery and back; a liveness failure
        stops it, as the kubelet's restart would, and is recorded as a failure."""
        port, probes = worker.process.port, worker.process.probes
        assert port is not None
        scale = self.options.watch_period_scale

        def readiness(ok: bool, why: str | None) -> None:
            worker.ready = ok
            self.probe_events.append({"pod": key[1], "probe": "readiness", "ok": ok, "why": why})
            self._publish()
            if worker.report_readiness:
                self._spawn(self._report_ready(key, ok, why))

        def liveness(ok: bool, why: str | None) -> None:
            if ok or self.workers.get(key) is not worker:
                return
            self.probe_events.append({"pod": key[1], "probe": "liveness", "ok": ok, "why": why})
            self.failed[key] = f"liveness probe failed: {why}"
            self._begin_stop(key)

        for probe, on_change in ((probes.readiness, readiness), (probes.liveness, liveness)):
            if probe is not None:
                worker.watchers.append(asyncio.create_task(watch(port, probe, scale, on_change)))

    def _begin_stop(self, key: Key) -> None:
        worker = self.workers.pop(key)
        worker.ready = False
        self._publish()  # out of the front and of discovery before SIGTERM
        self._spawn(self._stop(key, worker))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop(self, key: Key, worker: Worker) -> None:
        if worker.task is not None and not worker.task.done():
            worker.task.cancel()
        for watcher in worker.watchers:
            watcher.cancel()
        await asyncio.sleep(self.options.prestop_s)
        process = worker.process
        code = await process.stop(self.options.drain_grace_s + 10)
        self.stopped.append(
            {
                "namespace": key[0],
                "service": process.spec.service,
                "pod": key[1],
                "exitCode": code,
                "stopSeconds": process.stop_seconds,
                "heldAtSigterm": process.held_at_sigterm,
                "engine": process.engine,
                "engineProcessesLeft": process.engine_left,
                "startedAt": process.started_at,
                "readyAt": process.ready_at,
                "stoppedAt": time.time(),
            }
        )
        log.info("fleet: worker %s/%s stopped (exit %s)", *key, code)
        with contextlib.suppress(OSError):
            self._publish()

    async def shutdown(self) -> None:
        """Drain and stop every worker, even when state can no longer be written."""
        for task in self.runs.values():
            task.cancel()
        for key in list(self.workers):
            worker = self.workers.pop(key)
            self._spawn(self._stop(key, worker))
        with contextlib.suppress(OSError):
            self._publish()  # out of fronts and discovery while they drain
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for front in self.fronts.values():
            await front.stop()
        with contextlib.suppress(OSError):
            self._publish()

    # ---- fronts, discovery, state -----------------------------------------------------------

    def _publish(self) -> None:
        ready = [(k, w) for k, w in sorted(self.workers.items()) if w.ready]
        targets = [
            {
                "targets": [f"127.0.0.1:{w.process.port}"],
                "labels": {
                    "namespace": k[0],
                    "pod": k[1],
                    "tokenscale_io_service": w.process.spec.service,
                },
            }
            for k, w in ready
        ]
        write_atomic(self.options.sd_file, json.dumps(targets, indent=1))
        by_service: dict[Key, list[int]] = {}
        for k, w in ready:
            by_service.setdefault((k[0], w.process.spec.service), []).append(w.process.port or 0)
        for skey, front in self.fronts.items():
            front.set_backends(by_service.get(skey, []))
        missing = [s for s in by_service if s not in self.fronts]
        if missing:
            self._spawn(self._open_fronts(missing, by_service))
        self._write_state(ready)

    async def _open_fronts(self, keys: list[Key], by_service: dict[Key, list[int]]) -> None:
        for skey in keys:
            if skey in self.fronts:
                continue
            front = Front(skey[1])
            self.fronts[skey] = front
            await front.start()
            front.set_backends(by_service.get(skey, []))
            log.info("fleet: front for %s/%s on %s", *skey, front.url)
        self._publish()

    def _write_state(self, ready: list[tuple[Key, Worker]]) -> None:
        state = {
            "updatedAt": time.time(),
            "fronts": {
                f"{k[0]}/{k[1]}": {"url": f.url, "backends": f.backends}
                for k, f in self.fronts.items()
                if f.port is not None
            },
            "workers": {
                f"{k[0]}/{k[1]}": {
                    "service": w.process.spec.service,
                    "port": w.process.port,
                    "pid": w.process.proc.pid if w.process.proc else None,
                    "gpu": w.process.spec.gpu,
                    "model": w.process.spec.model,
                    "engine": w.process.engine,
                    "startedAt": w.process.started_at,
                    "readyAt": w.process.ready_at,
                }
                for k, w in ready
            },
            "tuning": {
                f"{k[0]}/{k[1]}": {**v, "path": str(self._tuning_path(*k))}
                for k, v in self.tuning.items()
            },
            "stopped": self.stopped,
            "failed": {f"{k[0]}/{k[1]}": v for k, v in self.failed.items()},
            "probeEvents": self.probe_events,
            "runs": self.run_results,
            "running": self.running_runs,
            "initContainers": self.init_results,
        }
        write_atomic(self.options.work_dir / "state.json", json.dumps(state, indent=1))

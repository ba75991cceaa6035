"""Helpers for the autoscaling scenarios: the fleet emulator as a subprocess, service manifests,
status readers, a replica/cap timeline sampled in the background, and the results file the
scenarios append their measured reaction times to."""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from tests.tools import tiny_model, vllm_python

from e2e.fleet.cluster import ClusterView
from e2e.fleet.lifetime import die_with_parent
from e2e.fleet.loadgen import RequestRecord, percentile
from e2e.fleet.workers import Engine
from e2e.harness import ROOT, Cluster, wait_for

RESULTS = Path(os.environ.get("TOKENSCALE_AS_RESULTS", ROOT / "out" / "autoscale-e2e.json"))

# Llama-3.1-8B on an L4 decodes in ~68 ms per token (memory-bound: 15 GiB of weights at
# 300 GB/s), which the operator's latency model knows too; a cap of 4 makes one replica serve
# ~1.8 requests/s of 32 output tokens: saturated by a few streams a 2-core machine can drive.
BASE_SERVICE: dict[str, Any] = {
    "apiVersion": "tokenscale.io/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "chat"},
    "spec": {
        "model": {
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "architecture": "llama-3.1-8b",
            "maxModelLen": 8192,
        },
        "resources": {"gpu": "l4-24gb", "cpu": "1", "memory": "2Gi"},
        "slo": {"ttftSeconds": 1.0, "itlSeconds": 0.1, "percentile": 95},
        "scaling": {
            "minReplicas": 1,
            "maxReplicas": 6,
            "mode": "auto",
            "scaleDownStabilizationSeconds": 30,
            "coldStartSeconds": 5,
            "batch": {"enabled": True, "minConcurrency": 2, "maxConcurrency": 4},
        },
    },
}


def service(name: str = "chat", **sections: dict[str, Any]) -> dict[str, Any]:
    """BASE_SERVICE with `sections` merged one level deep (spec.scaling={...} updates keys)."""
    doc = copy.deepcopy(BASE_SERVICE)
    doc["metadata"]["name"] = name
    for key, value in sections.items():
        doc["spec"].setdefault(key, {}).update(value)
    return doc


def epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# ---- the fleet emulator -----------------------------------------------------------------------


@dataclass
class FleetProcess:
    cluster: Cluster
    namespace: str
    work_dir: Path
    sd_dir: Path
    time_scale: float = 1.0
    engine: Engine = "sim"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sd_file(self) -> Path:
        return self.sd_dir / f"{self.namespace}.json"

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = (self.work_dir / "fleet.log").open("ab")
        env = {**os.environ, **self.cluster.env, "PYTHONPATH": str(ROOT)}
        if self.engine == "vllm":
            env |= real_engine_env()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "e2e.fleet",
                "--namespace",
                self.namespace,
                "--work-dir",
                str(self.work_dir),
                "--sd-file",
                str(self.sd_file),
                "--time-scale",
                str(self.time_scale),
                "--engine",
                self.engine,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        log.close()
        wait_for("fleet state file", lambda: self._alive() and self.state(), timeout=30)

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"fleet emulator exited; log:\n{self.log_tail()}")
        return True

    def state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.work_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return state

    def front(self, svc: str, backends: int = 1, timeout: float = 60) -> str:
        """The service's front URL once it has at least `backends` live workers."""

        def probe() -> str | None:
            self._alive()
            front = self.state().get("fronts", {}).get(f"{self.namespace}/{svc}")
            return front["url"] if front and len(front["backends"]) >= backends else None

        return wait_for(f"front of {svc} with {backends} backends", probe, timeout=timeout)

    def backends(self, svc: str) -> int:
        """Workers the service's front sends requests to (ready, not draining)."""
        front = self.state().get("fronts", {}).get(f"{self.namespace}/{svc}") or {}
        return len(front.get("backends") or [])

    def workers(self, svc: str) -> int:
        return sum(1 for w in self.state().get("workers", {}).values() if w["service"] == svc)

    def starts(self, svc: str) -> list[dict[str, Any]]:
        """Each of the service's workers, serving or stopped: when it was spawned, when its
        readiness probe first passed, and the seconds between (its cold start)."""
        state = self.state()
        workers = [w | {"pod": k} for k, w in state.get("workers", {}).items()]
        found = [w for w in workers + state.get("stopped", []) if w["service"] == svc]
        return sorted(
            (
                {
                    "pod": str(w["pod"]).rsplit("/", 1)[-1],
                    "startedAt": w["startedAt"],
                    "readyAt": w["readyAt"],
                    "coldStartS": round(w["readyAt"] - w["startedAt"], 1),
                }
                for w in found
                if w.get("readyAt")
            ),
            key=lambda w: w["startedAt"],
        )

    def stopped(self) -> list[dict[str, Any]]:
        stopped: list[dict[str, Any]] = self.state().get("stopped", [])
        return stopped

    def stop(self, timeout: float = 150) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sd_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.work_dir / "fleet.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def real_engine_env() -> dict[str, str]:
    """What a node running real vLLM's CPU build sets for its workers (engine_profile.py): the
    cached vLLM environment, and the directory pvc:// sources resolve under (the tiny model)."""
    return {
        "TOKENSCALE_ENGINE_PROFILE": "cpu-test",
        "TOKENSCALE_VLLM_PYTHON": vllm_python(),
        "TOKENSCALE_MODELS_DIR": str(Path(tiny_model()).parent),
    }


# ---- what the operator says -------------------------------------------------------------------


@dataclass
class Service:
    """One InferenceService read through the API (a pooled client, not kubectl: the timeline
    reads twice a second while the scenario runs)."""

    cluster: Cluster
    namespace: str
    name: str = "chat"
    view: ClusterView = field(init=False)

    def __post_init__(self) -> None:
        self.view = ClusterView(self.cluster.kubeconfig)

    @property
    def path(self) -> str:
        base = f"/apis/tokenscale.io/v1alpha1/namespaces/{self.namespace}"
        return f"{base}/inferenceservices/{self.name}"

    def get(self) -> dict[str, Any]:
        obj = self.view.get(self.path)
        assert obj is not None, f"{self.namespace}/{self.name} is gone"
        return obj

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.get().get("status") or {}
        return status

    def patch_status(self, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource (as the operator's own memory would read)."""
        self.cluster.kubectl(
            "patch", "inferenceservice", self.name, "-n", self.namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def condition(self, type_: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        status = self.status() if status is None else status
        for cond in status.get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def deployment(self) -> dict[str, Any]:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.name}"
        return self.view.get(path) or {}

    def replicas(self) -> int:
        return int((self.deployment().get("spec") or {}).get("replicas") or 0)

    def pods(self) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        found = self.view.get(path, labelSelector=f"tokenscale.io/service={self.name}") or {}
        pods: list[dict[str, Any]] = found.get("items") or []
        return pods

    def decisions(self) -> list[dict[str, Any]]:
        decisions: list[dict[str, Any]] = self.status().get("lastDecisions") or []
        return decisions

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{self.namespace}/events"
        found = self.view.get(path, fieldSelector=f"involvedObject.name={self.name}") or {}
        return [
            e
            for e in found.get("items") or []
            if e["involvedObject"].get("kind") == "InferenceService"
            and (reason is None or e.get("reason") == reason)
        ]


# Read errors a loaded API server gives now and then: socket errors, urllib3's, and the HTTP
# status errors ClusterView raises as RuntimeError. Anything else stops the timeline loudly.
TRANSIENT = (OSError, RuntimeError, urllib3.exceptions.HTTPError)

# The longest gap allowed between two timeline samples: two autoscaling ticks (10 s). A replica
# change persists for at least a tick, so it is seen by a sample on either side of such a gap;
# a loaded machine slows a sample (two API reads) to a second or two, not to ten.
TICK_GAP_S = 10.0


@dataclass
class Sample:
    at: float
    replicas: int
    ready: int
    cap: int | None
    slo_met: str
    metrics: str
    desired: int | None


@dataclass
class Timeline:
    """Samples the Deployment and the service status every `every` seconds on a thread, so a
    test can wait on one thing while asserting on the whole history (e.g. never scaled down)."""

    svc: Service
    every: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    # Every decision status.lastDecisions showed while sampling (it keeps only the last 10).
    decisions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Every (time, replicas) recommendation status.autoscaler showed (its stabilization window).
    recommendations: set[tuple[float, int]] = field(default_factory=set)
    # Transient read errors (connection reset under load): counted, and visible as gaps.
    errors: list[str] = field(default_factory=list)
    # A sampling failure that is no transient error (the service is gone, a bug in a reader):
    # raised by every reader below, so no assertion runs on a timeline that stopped.
    fatal: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Timeline:
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
            except TRANSIENT as err:  # refused/reset/timeout, HTTP 429/5xx: the next sample will do
                self.errors.append(f"{time.time():.1f}: {err!r}")
            except BaseException as err:  # handed to the test thread by every reader: not swallowed
                self.fatal = err
                return
            self._stop.wait(self.every)

    def _sample(self) -> Sample:
        obj, dep = self.svc.get(), self.svc.deployment()
        status = obj.get("status") or {}
        for d in status.get("lastDecisions") or []:
            self.decisions.setdefault((d["time"], d["reason"]), d)
        for t, r in (status.get("autoscaler") or {}).get("recommendations") or []:
            self.recommendations.add((float(t), int(r)))
        return Sample(
            at=time.time(),
            replicas=int((dep.get("spec") or {}).get("replicas") or 0),
            ready=int((dep.get("status") or {}).get("readyReplicas") or 0),
            cap=(status.get("plan") or {}).get("concurrencyCap"),
            slo_met=self.svc.condition("SLOMet", status).get("status", ""),
            metrics=self.svc.condition("MetricsAvailable", status).get("status", ""),
            desired=status.get("desiredReplicas"),
        )

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._raise_fatal()
        return self.samples

    def _raise_fatal(self) -> None:
        if self.fatal is not None:
            raise AssertionError(f"the timeline stopped sampling: {self.fatal!r}") from self.fatal

    def history(self) -> list[dict[str, Any]]:
        self._raise_fatal()
        return [self.decisions[k] for k in sorted(self.decisions)]

    def since(self, t: float) -> list[Sample]:
        self._raise_fatal()
        return [s for s in list(self.samples) if s.at >= t]

    def between(self, start: float, end: float, max_gap: float = TICK_GAP_S) -> list[Sample]:
        """The samples of [start, end], checked to cover it: one within `max_gap` of each end and
        no gap between two longer than `max_gap`, so a change cannot hide between samples and an
        `all(...)` over them is never an `all` over nothing."""
        got = [s for s in self.since(start) if s.at <= end]
        assert got, f"no sample in [{start:.1f}, {end:.1f}]; read errors: {self.errors[-3:]}"
        edges = [start, *(s.at for s in got), end]
        gaps = [b - a for a, b in itertools.pairwise(edges)]
        assert max(gaps) <= max_gap, (
            f"sampling gap of {max(gaps):.1f} s > {max_gap} s in [{start:.1f}, {end:.1f}]; "
            f"read errors: {self.errors[-3:]}"
        )
        return got

    def first(self, t: float, pred: Any) -> Sample | None:
        return next((s for s in self.since(t) if pred(s)), None)


def record_result(scenario: str, figures: dict[str, Any]) -> None:
    """Append a scenario's measured figures to the results file (printed too)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            data = json.loads(RESULTS.read_text())
        except ValueError:
            data = {}
    data[scenario] = {**figures, "recordedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True))
    print(f"\n[{scenario}] " + json.dumps(figures, sort_keys=True))


# ---- measurements -----------------------------------------------------------------------------


def slo_recovery(samples: list[Sample], since: float) -> tuple[bool, float | None]:
    """(missed, recovered_at) for SLOMet after `since`: whether it went False, and the first time
    it was True again after the last False. Not missed: (False, None)."""
    after = [s for s in samples if s.at >= since]
    falses = [s for s in after if s.slo_met == "False"]
    if not falses:
        return False, None
    later = [s for s in after if s.at > falses[-1].at and s.slo_met == "True"]
    return True, (later[0].at if later else None)


def client_ttft_recovery(
    records: list[RequestRecord], since: float, slo_s: float, bucket_s: float = 5.0
) -> float | None:
    """Seconds from `since` to the end of the last `bucket_s` window (by send time) whose
    client-side p95 TTFT was over `slo_s`; None when no window was over."""
    windows: dict[int, list[float]] = {}
    for r in records:
        if r.sent_at >= since and r.ttft_s is not None:
            windows.setdefault(int((r.sent_at - since) // bucket_s), []).append(r.ttft_s)
    over = [i for i, ttfts in windows.items() if (percentile(ttfts, 95) or 0.0) > slo_s]
    return None if not over else (max(over) + 1) * bucket_s


def decreases(samples: list[Sample]) -> list[tuple[float, int, int]]:
    """Every (time, from, to) where the replica count went down."""
    return [
        (b.at, a.replicas, b.replicas)
        for a, b in itertools.pairwise(samples)
        if b.replicas < a.replicas
    ]


def incomplete(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if not r.complete]

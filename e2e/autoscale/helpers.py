"""Helpers for the autoscaling scenarios: the fleet emulator as a subprocess, service manifests,
status readers, a replica/cap timeline sampled in the background, and the results file the
scenarios append their measured reaction times to."""

from __future__ import annotations

import copy
import datetime
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
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sd_file(self) -> Path:
        return self.sd_dir / f"{self.namespace}.json"

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = (self.work_dir / "fleet.log").open("ab")
        env = {**os.environ, **self.cluster.env, "PYTHONPATH": str(ROOT)}
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
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
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

    def workers(self, svc: str) -> int:
        return sum(1 for w in self.state().get("workers", {}).values() if w["service"] == svc)

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


# ---- what the operator says -------------------------------------------------------------------


@dataclass
class Service:
    cluster: Cluster
    namespace: str
    name: str = "chat"

    def get(self) -> dict[str, Any]:
        obj = self.cluster.get("inferenceservice", self.name, self.namespace)
        assert obj is not None, f"{self.namespace}/{self.name} is gone"
        return obj

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.get().get("status") or {}
        return status

    def condition(self, type_: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        status = self.status() if status is None else status
        for cond in status.get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def replicas(self) -> int:
        dep = self.cluster.get("deployment", self.name, self.namespace)
        return int(((dep or {}).get("spec") or {}).get("replicas") or 0)

    def decisions(self) -> list[dict[str, Any]]:
        decisions: list[dict[str, Any]] = self.status().get("lastDecisions") or []
        return decisions

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        items = self.cluster.items("events", self.namespace)
        return [
            e
            for e in items
            if e["involvedObject"].get("name") == self.name
            and e["involvedObject"].get("kind") == "InferenceService"
            and (reason is None or e.get("reason") == reason)
        ]


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
            except AssertionError:
                pass  # a transient API error; the next sample will do
            self._stop.wait(self.every)

    def _sample(self) -> Sample:
        obj, dep = (
            self.svc.get(),
            self.svc.cluster.get("deployment", self.svc.name, self.svc.namespace),
        )
        status = obj.get("status") or {}
        return Sample(
            at=time.time(),
            replicas=int(((dep or {}).get("spec") or {}).get("replicas") or 0),
            ready=int(((dep or {}).get("status") or {}).get("readyReplicas") or 0),
            cap=(status.get("plan") or {}).get("concurrencyCap"),
            slo_met=self.svc.condition("SLOMet", status).get("status", ""),
            metrics=self.svc.condition("MetricsAvailable", status).get("status", ""),
            desired=status.get("desiredReplicas"),
        )

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.samples

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.at >= t]

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

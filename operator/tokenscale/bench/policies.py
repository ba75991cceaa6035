"""Scaling policies the benchmark compares, each read from its anchor's documented algorithm.

tokenscale  the operator's own `decide()` (the same function, nothing bench-specific).
static      peak provisioning: a fixed replica count.
hpa-queue   KEDA `prometheus` trigger on sum(vllm:num_requests_waiting), metricType AverageValue
            (the vLLM production-stack's KEDA tutorial), driving a Kubernetes HPA with its
            behaviour defaults (kubernetes `pkg/controller/podautoscaler/horizontal.go`,
            `replica_calculator.go`): 15 s sync, 10% tolerance, scale-up max(100%, 4 pods) per
            15 s, scale-down 100% per 15 s after a 300 s stabilization window.
kpa         Knative KPA (`pkg/autoscaler/scaling/autoscaler.go`): concurrency averaged over a 60 s
            stable and a 6 s panic window, target x 0.7 utilization, panic at 200% of ready
            pods (no scale-down while panicking, leaves after a stable window), scale-down at
            most /2 per tick, scale-up at most x1000.
apa         AIBrix APA (`pkg/controller/podautoscaler/algorithm/apa.go`): ratio of per-pod
            concurrency to target over a 30 s window; scale only outside a +/-10% band, to
            ceil(pods x ratio), at most x2 up or /2 down per decision.
Baselines run vLLM's own batching (max_num_seqs from the plan, no gateway cap).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from tokenscale.bench.metrics import Recorder
from tokenscale.bench.scenario import Scenario
from tokenscale.domain.observation import Observation, ScalerState
from tokenscale.domain.scaling import decide


class Policy:
    name = "policy"
    config = ""

    def initial_cap(self, scenario: Scenario) -> int:
        return scenario.plan.max_num_seqs

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        """(replicas, concurrency cap or None to keep it)."""
        raise NotImplementedError


class Tokenscale(Policy):
    name = "tokenscale"

    def __init__(self, scenario: Scenario) -> None:
        self.spec = scenario.spec()
        self.plan = scenario.plan
        self.state = ScalerState()
        self.config = "defaults" if scenario.batch_tuning else "batch tuning off"
        self.reasons: list[tuple[float, str]] = []

    def initial_cap(self, scenario: Scenario) -> int:
        return self.plan.max_concurrency

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        d = decide(self.spec, self.plan, obs, self.state, now)
        self.state = d.state
        if d.replicas != d.previous_replicas:
            self.reasons.append((now, d.reason))
        return d.replicas, d.concurrency_cap


class Static(Policy):
    name = "static"

    def __init__(self, replicas: int, label: str = "") -> None:
        self.replicas = replicas
        self.config = label or f"{replicas} replicas"

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        return self.replicas, None


@dataclass
class HpaQueue(Policy):
    threshold: float
    min_replicas: int = 1
    max_replicas: int = 40
    tolerance: float = 0.1
    stabilization_s: float = 300.0
    recs: deque[tuple[float, int]] = field(default_factory=deque)
    name = "hpa-queue"

    def __post_init__(self) -> None:
        self.config = f"waiting/pod target {self.threshold:g}"

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        current = obs.replicas_now()
        ready = max(1, obs.ready_replicas or 0)
        total = obs.waiting or 0.0
        ratio = total / (self.threshold * ready)
        desired = (
            current if abs(ratio - 1.0) <= self.tolerance else math.ceil(total / self.threshold)
        )
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        self.recs.append((now, desired))
        while self.recs and now - self.recs[0][0] >= self.stabilization_s:
            self.recs.popleft()
        if desired < current:
            desired = min(current, max(r for _, r in self.recs))
        up_limit = max(current * 2, current + 4)
        return min(desired, up_limit), None


@dataclass
class Kpa(Policy):
    target: float
    min_replicas: int = 1
    max_replicas: int = 40
    utilization: float = 0.7
    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0
    panic_since: float | None = None
    max_panic: int = 0
    name = "kpa"

    def __post_init__(self) -> None:
        self.config = f"concurrency target {self.target:g}"

    def _avg(self, rec: Recorder, now: float, window: float) -> float:
        vals = [c for t, c in rec.concurrency if now - t < window]
        return sum(vals) / len(vals) if vals else 0.0

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        ready = max(1, obs.ready_replicas or 0)
        per_pod = self.target * self.utilization
        stable = math.ceil(self._avg(rec, now, self.stable_s) / per_pod)
        panic = math.ceil(self._avg(rec, now, self.panic_s) / per_pod)
        over = panic / ready >= self.panic_threshold
        if over:
            if self.panic_since is None:
                self.max_panic = ready
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= self.stable_s:
            self.panic_since, self.max_panic = None, 0
        desired = stable
        if self.panic_since is not None:
            desired = max(panic, self.max_panic)
            self.max_panic = desired
        desired = max(desired, math.floor(ready / 2))
        return min(max(desired, self.min_replicas), self.max_replicas), None


@dataclass
class Apa(Policy):
    target: float
    min_replicas: int = 1
    max_replicas: int = 40
    up_tolerance: float = 0.1
    down_tolerance: float = 0.1
    window_s: float = 30.0
    max_up: float = 2.0
    max_down: float = 2.0
    name = "apa"

    def __post_init__(self) -> None:
        self.config = f"concurrency/pod target {self.target:g}"

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        current = obs.replicas_now()
        pods = max(1, obs.ready_replicas or 0)
        vals = [c for t, c in rec.concurrency if now - t < self.window_s]
        per_pod = (sum(vals) / len(vals) if vals else 0.0) / pods
        ratio = per_pod / self.target
        desired = current
        if ratio > 1 + self.up_tolerance:
            desired = min(math.ceil(pods * ratio), math.ceil(self.max_up * pods))
        elif ratio < 1 - self.down_tolerance:
            desired = max(math.ceil(pods * ratio), math.floor(pods / self.max_down))
        return min(max(desired, self.min_replicas), self.max_replicas), None

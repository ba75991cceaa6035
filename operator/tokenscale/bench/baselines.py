"""The public autoscalers the benchmark compares, each at its released defaults.

Every baseline reads the fleet's concurrency (running + waiting, gateway queues included) or
vLLM's `num_requests_waiting`, and keeps its main threshold as a parameter: the benchmark runs it
at its release default where the release has one, at a setting searched per workload (hindsight:
the strongest that baseline can be), and at one global setting (the cheapest reaching 99% on
every training workload; `tuned.py`).

hpa, hpa-queue  Kubernetes HPA v2 driven by KEDA's `prometheus` trigger, metricType AverageValue
    (vLLM production-stack's KEDA tutorial), on sum(running + waiting) (`hpa`) or
    sum(vllm:num_requests_waiting) (`hpa-queue`). Replica arithmetic of kubernetes v1.31
    `pkg/controller/podautoscaler/replica_calculator.go` (GetExternalPerPodMetricReplicas):
    usageRatio = usage / (target x status.replicas); inside the 10% tolerance keep
    status.replicas, else desired = ceil(usage / target). Behaviour defaults of
    `pkg/controller/podautoscaler/horizontal.go`: 15 s sync, scale-up max(100%, 4 pods) per
    15 s with no stabilization, scale-down 100% per 15 s after a 300 s stabilization window
    (the highest recommendation of the last 300 s). No released default target: searched.
kpa, kpa-2s  Knative Serving v1.16 KPA (`pkg/autoscaler/scaling/autoscaler.go`, defaults in
    `config/core/configmaps/autoscaler.yaml`): stable window 60 s, panic window 10% of it (6 s),
    panic threshold 200% of ready pods, container-concurrency-target-default 100 and
    target-utilization 70% (70 in flight per pod; with a containerConcurrency hard limit the
    target is that limit x 70%), max scale-up rate 1000, max scale-down rate 2; in panic no
    scale-down, leaving after a stable window below the threshold. Knative's autoscaler ticks
    every 2 s (`kpa-2s`); `kpa` decides on the operator's 15 s loop.
apa, apa-2024  AIBrix APA (`pkg/controller/podautoscaler/algorithm/apa.go`): per-pod concurrency
    averaged over a window, ratio r = per-pod / target; scale up to ceil(pods x r) when
    r > 1 + up tolerance, down to ceil(pods x r) when r < 1 - down tolerance, at most x2 up or
    /2 down per decision. Current release (`apa`): 180 s window, 0.1 tolerance both ways,
    300 s cooldown before a scale-down (none within 300 s of the last change). 2024 release
    v0.1 (`apa-2024`): 60 s window, up tolerance 0.1, down tolerance 0.2, no cooldown.
    No released default target: searched.

Every baseline starts from the same warm fleet as tokenscale and makes no decision before its
window holds a full window of samples (its history starts with the replay; a real one would have
the minutes before): otherwise the empty window at t = 0 reads as no load and scales the warm
fleet down to one replica.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenscale.bench.metrics import Recorder
from tokenscale.bench.policies import Policy
from tokenscale.domain.observation import Observation

WARMUP_S = 60.0  # HPA: one metrics minute before its first recommendation


def _window_mean(rec: Recorder, now: float, window: float) -> float:
    vals = [c for t, c in rec.concurrency if now - t < window]
    return sum(vals) / len(vals) if vals else 0.0


def _cap_label(option: str) -> str:
    return "" if option == "vllm" else ", rendered cap"


@dataclass
class Hpa(Policy):
    """Kubernetes HPA + KEDA AverageValue; `waiting_only` reads vllm:num_requests_waiting."""

    threshold: float
    waiting_only: bool = False
    cap_option: str = "vllm"
    min_replicas: int = 1
    max_replicas: int = 40
    tolerance: float = 0.1
    stabilization_s: float = 300.0
    recs: deque[tuple[float, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.name = "hpa-queue" if self.waiting_only else "hpa"
        what = "waiting" if self.waiting_only else "running+waiting"
        self.config = f"{what}/pod target {self.threshold:g}{_cap_label(self.cap_option)}"

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        current = max(1, obs.replicas_now())  # status.replicas: every pod, ready or not
        if now < WARMUP_S:
            return current, None
        usage = (obs.waiting or 0.0) + (0.0 if self.waiting_only else (obs.running or 0.0))
        ratio = usage / (self.threshold * current)
        # 30 waiting at target 5 on 4 pods: ratio 1.5 -> ceil(30 / 5) = 6 pods
        desired = (
            current if abs(1.0 - ratio) <= self.tolerance else math.ceil(usage / self.threshold)
        )
        self.recs.append((now, desired))
        while self.recs and now - self.recs[0][0] >= self.stabilization_s:
            self.recs.popleft()
        if desired < current:
            desired = min(current, max(r for _, r in self.recs))
        desired = min(desired, max(current * 2, current + 4))
        return min(max(desired, self.min_replicas), self.max_replicas), None


@dataclass
class Kpa(Policy):
    """Knative KPA; `target` is the per-pod concurrency target before the 70% utilization."""

    target: float = 100.0
    tick: float = 15.0
    cap_option: str = "vllm"
    min_replicas: int = 1
    max_replicas: int = 40
    utilization: float = 0.7
    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up: float = 1000.0
    max_scale_down: float = 2.0
    panic_since: float | None = None
    max_panic: int = 0

    def __post_init__(self) -> None:
        self.name = "kpa-2s" if self.tick < 15.0 else "kpa"
        self.tick_s = self.tick
        self.config = f"concurrency target {self.target:g}{_cap_label(self.cap_option)}"

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        if now < self.stable_s:
            return obs.replicas_now(), None
        ready = max(1, obs.ready_replicas or 0)
        per_pod = self.target * self.utilization
        # 420 in flight over the stable window at 100 x 0.7 per pod -> 6 pods
        stable = math.ceil(_window_mean(rec, now, self.stable_s) / per_pod)
        panic = math.ceil(_window_mean(rec, now, self.panic_s) / per_pod)
        if panic / ready >= self.panic_threshold:
            if self.panic_since is None:
                self.max_panic = ready
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= self.stable_s:
            self.panic_since, self.max_panic = None, 0
        desired = stable
        if self.panic_since is not None:
            desired = max(panic, self.max_panic)
            self.max_panic = desired
        desired = min(desired, math.ceil(self.max_scale_up * ready))
        desired = max(desired, math.floor(ready / self.max_scale_down))
        return min(max(desired, self.min_replicas), self.max_replicas), None


@dataclass
class Apa(Policy):
    """AIBrix APA; `release` picks the current (2025) or the 2024 defaults."""

    target: float
    release: str = "current"
    cap_option: str = "vllm"
    min_replicas: int = 1
    max_replicas: int = 40
    max_up: float = 2.0
    max_down: float = 2.0
    last_change: float | None = None

    def __post_init__(self) -> None:
        if self.release == "current":
            self.window_s, self.up_tol, self.down_tol, self.cooldown_s = 180.0, 0.1, 0.1, 300.0
            self.name = "apa"
        elif self.release == "2024":
            self.window_s, self.up_tol, self.down_tol, self.cooldown_s = 60.0, 0.1, 0.2, 0.0
            self.name = "apa-2024"
        else:
            raise ValueError(f"APA release {self.release!r}: choose current or 2024")
        self.config = f"concurrency/pod target {self.target:g}{_cap_label(self.cap_option)}"

    def decide(self, now: float, obs: Observation, rec: Recorder) -> tuple[int, int | None]:
        current = max(1, obs.replicas_now())
        if now < self.window_s:
            return current, None
        pods = max(1, obs.ready_replicas or 0)
        ratio = _window_mean(rec, now, self.window_s) / pods / self.target
        desired = current
        if ratio > 1 + self.up_tol:
            desired = min(math.ceil(pods * ratio), math.ceil(self.max_up * pods))
        elif ratio < 1 - self.down_tol:
            cooling = self.last_change is not None and now - self.last_change < self.cooldown_s
            if not cooling:
                desired = max(math.ceil(pods * ratio), math.floor(pods / self.max_down))
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        if desired != current:
            self.last_change = now
        return desired, None


@dataclass(frozen=True)
class Family:
    """One baseline with its threshold as the free parameter."""

    name: str
    make: Callable[[float, str, int, int], Policy]  # (threshold, cap option, min, max)
    search: tuple[float, float]  # threshold range the hindsight search brackets
    default: float | None = None  # the release's own default threshold, if it has one


# Search ranges bracket each baseline's 99% point on the training set (found with wider ranges
# on shorter replays first); a range edge that passes or fails outright is reported as such.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("hpa", lambda t, c, lo, hi: Hpa(t, False, c, lo, hi), (8.0, 48.0)),
        Family("hpa-queue", lambda t, c, lo, hi: Hpa(t, True, c, lo, hi), (0.5, 8.0)),
        Family("kpa", lambda t, c, lo, hi: Kpa(t, 15.0, c, lo, hi), (12.0, 48.0), 100.0),
        Family("kpa-2s", lambda t, c, lo, hi: Kpa(t, 2.0, c, lo, hi), (12.0, 48.0), 100.0),
        Family("apa", lambda t, c, lo, hi: Apa(t, "current", c, lo, hi), (8.0, 32.0)),
        Family("apa-2024", lambda t, c, lo, hi: Apa(t, "2024", c, lo, hi), (8.0, 32.0)),
    )
}

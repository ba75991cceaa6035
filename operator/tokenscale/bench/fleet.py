"""A fleet of simulated replicas in virtual time: pods that take a cold start to become ready,
each a gateway (per-replica concurrency cap and FIFO queue) in front of the worker's clock-free
engine model (`tokenscale_sim.engine.EngineModel`), behind a least-request balancer
(Envoy's LEAST_REQUEST: the lighter of two random ready replicas).

Scale-down drains: a removed replica takes no new requests and ends when its queue and batch are
empty. GPU time counts from pod creation (the GPUs are allocated when the pod is scheduled) to its
end. Requests arriving while no replica is ready are rejected (no endpoints: connection refused).
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np

from tokenscale.bench.metrics import Recorder
from tokenscale.bench.traces import Trace
from tokenscale_sim.engine import AdvanceResult, EngineModel, StepResult
from tokenscale_sim.profile import EngineProfile

# Step-noise multipliers drawn per pod, then cycled: enough that a pod's steps do not repeat a
# pattern the policy could pick up within a scrape window.
STEP_NOISE_DRAWS = 4096


class Replica:
    """One pod: gateway queue + engine."""

    __slots__ = (
        "cap",
        "drain_at",
        "ended_at",
        "engine",
        "in_engine",
        "queue",
        "ready_at",
        "started_at",
    )

    def __init__(
        self,
        profile: EngineProfile,
        started_at: float,
        ready_at: float,
        cap: int,
        step_noise: list[float] | None = None,
    ):
        self.engine = EngineModel(profile, step_noise=step_noise)
        self.engine.clock = ready_at
        self.started_at = started_at
        self.ready_at = ready_at
        self.cap = cap
        self.queue: deque[int] = deque()
        self.in_engine = 0
        self.drain_at: float | None = None
        self.ended_at: float | None = None

    @property
    def load(self) -> int:
        return self.in_engine + len(self.queue)

    def advance(self, t: float, rec: Recorder, trace: Trace) -> None:
        """Run the engine up to `t`, feeding queued requests as slots free up."""
        eng = self.engine
        while True:
            self._admit(rec, trace)
            if not self.queue:
                acc: AdvanceResult = eng.advance(t)
                if acc.first_tokens or acc.finished:
                    rec.on_advance(acc)
                    self.in_engine -= len(acc.finished)
                return
            if eng.clock >= t or not eng.has_work:
                return
            res: StepResult | None = eng.step(eng.clock)
            if res is None:
                return
            if res.first_tokens or res.finished:
                rec.on_step(res)
                self.in_engine -= len(res.finished)

    def _admit(self, rec: Recorder, trace: Trace) -> None:
        eng = self.engine
        while self.queue and self.in_engine < self.cap:
            rid = self.queue.popleft()
            now = max(eng.clock, float(trace.arrival[rid]))
            self.submit(rid, now, trace)

    def submit(self, rid: int, now: float, trace: Trace) -> None:
        out = int(trace.output[rid])
        self.engine.add_request(rid, int(trace.prompt[rid]), out, now, output_tokens=out)
        self.in_engine += 1

    def offer(self, rid: int, now: float, trace: Trace) -> None:
        if self.in_engine < self.cap and not self.queue:
            self.submit(rid, now, trace)
        else:
            self.queue.append(rid)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.engine.has_work


class Fleet:
    """All pods of one service under one policy."""

    def __init__(
        self,
        profile: EngineProfile,
        trace: Trace,
        rec: Recorder,
        cold_start_s: float,
        gpus_per_replica: int,
        seed: int,
        cold_start_sigma: float = 0.0,
        step_noise_sigma: float = 0.0,
    ) -> None:
        self.profile = profile
        self.trace = trace
        self.rec = rec
        self.cold_start_s = cold_start_s
        # > 0: each pod's cold start is lognormal with median cold_start_s (a drawn world)
        self.cold_start_sigma = cold_start_sigma
        # > 0: each pod's step times vary around the roofline (lognormal, mean 1)
        self.step_noise_sigma = step_noise_sigma
        self.np_rng = np.random.default_rng(seed)
        self.gpus_per_replica = gpus_per_replica
        self.rng = random.Random(seed)
        self.alive: list[Replica] = []  # starting, ready and draining
        self.ended: list[Replica] = []
        self.routable: list[Replica] = []
        self.next_ready = float("inf")
        self.cap = profile.max_num_seqs
        self.scale_events = 0
        self.rejected = 0

    # -- pods -------------------------------------------------------------------------------

    def start(self, n: int, now: float, warm: bool = False) -> None:
        for _ in range(n):
            ready = now if warm else now + self._cold_start()
            self.alive.append(Replica(self.profile, now, ready, self.cap, self._step_noise()))
        self._refresh(now)

    def _step_noise(self) -> list[float] | None:
        sigma = self.step_noise_sigma
        if sigma <= 0:
            return None
        # exp(N(-sigma^2/2, sigma)) has mean 1: the roofline is the mean step time.
        draws = self.np_rng.lognormal(-sigma * sigma / 2, sigma, STEP_NOISE_DRAWS)
        return [float(x) for x in draws]

    def _cold_start(self) -> float:
        if self.cold_start_sigma <= 0:
            return self.cold_start_s
        return self.cold_start_s * float(self.np_rng.lognormal(0.0, self.cold_start_sigma))

    def active(self) -> list[Replica]:
        return [r for r in self.alive if r.drain_at is None]

    def set_replicas(self, n: int, now: float) -> None:
        active = self.active()
        if n == len(active):
            return
        self.scale_events += 1
        if n > len(active):
            self.start(n - len(active), now)
            return
        # Remove pods not yet ready first (newest first), then the least-loaded ready ones.
        victims = sorted(active, key=lambda r: (r.ready_at <= now, r.load, -r.started_at))
        for r in victims[: len(active) - n]:
            r.drain_at = now
        self._refresh(now)
        self.reap(now)

    def set_cap(self, cap: int) -> None:
        self.cap = cap
        for r in self.alive:
            r.cap = cap

    def reap(self, now: float) -> None:
        """End drained pods: a pod not yet ready ends at once; a ready one once idle."""
        keep: list[Replica] = []
        for r in self.alive:
            if r.drain_at is not None and r.idle:
                r.ended_at = max(r.drain_at, min(now, r.engine.clock)) if r.ready_at <= now else now
                self.ended.append(r)
            else:
                keep.append(r)
        self.alive = keep

    def _refresh(self, now: float) -> None:
        self.routable = [r for r in self.alive if r.drain_at is None and r.ready_at <= now]
        pending = [r.ready_at for r in self.alive if r.drain_at is None and r.ready_at > now]
        self.next_ready = min(pending, default=float("inf"))

    # -- traffic ----------------------------------------------------------------------------

    def arrive(self, rid: int, now: float) -> None:
        if now >= self.next_ready:
            self._refresh(now)
        routable = self.routable
        if not routable:
            self.rejected += 1
            self.rec.on_reject(rid)
            return
        if len(routable) == 1:
            r = routable[0]
        else:
            a, b = self.rng.sample(routable, 2)
            a.advance(now, self.rec, self.trace)
            b.advance(now, self.rec, self.trace)
            r = a if a.load <= b.load else b
        r.advance(now, self.rec, self.trace)
        r.offer(rid, now, self.trace)

    def advance_all(self, now: float) -> None:
        for r in self.alive:
            r.advance(now, self.rec, self.trace)
        self._refresh(now)
        self.reap(now)

    # -- gauges -----------------------------------------------------------------------------

    def gauges(self, now: float) -> tuple[float, float, float]:
        """(running, waiting incl. gateway queues, mean KV use) over pods serving traffic."""
        serving = [r for r in self.alive if r.ready_at <= now]
        running = sum(r.engine.num_running for r in serving)
        waiting = sum(r.engine.num_waiting + len(r.queue) for r in serving)
        kv = float(np.mean([r.engine.kv_usage for r in serving])) if serving else 0.0
        return float(running), float(waiting), kv

    def gpu_hours(self, until: float) -> float:
        total = 0.0
        for r in (*self.alive, *self.ended):
            end = min(until, r.ended_at if r.ended_at is not None else until)
            total += max(0.0, end - r.started_at)
        return total * self.gpus_per_replica / 3600.0

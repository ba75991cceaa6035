"""A fleet of simulated replicas in virtual time: pods that take a cold start to become ready,
each a gateway (per-replica concurrency cap and FIFO queue) in front of the worker's clock-free
engine model (`tokenscale_sim.engine.EngineModel`), behind a least-request balancer
(Envoy's LEAST_REQUEST: the lighter of two random ready replicas) or, to measure what a
prefill-aware gateway would buy, one that picks the replica with the least prefill ahead.

Scale-down drains: a removed replica takes no new requests and ends when its queue and batch are
empty. GPU time counts from pod creation (the GPUs are allocated when the pod is scheduled) to its
end. Requests arriving while no replica is ready are rejected (no endpoints: connection refused).
A multi-node replica is a group of `nodes` pods created, started and removed together: it is
ready when its slowest node has loaded its shard, plus the ranks' rendezvous
(`scenario.group_cold_start`), and its GPU time is the group's life times all its GPUs
(`gpus_per_replica` = tensor parallel x nodes).
Clients that time out, retry 429s or cancel, and the prefix cache: `bench.clients`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from functools import cached_property

import numpy as np

from tokenscale.bench.clients import (
    I64,
    ClientModel,
    PrefixCache,
    seen_before_hits,
)
from tokenscale.bench.feasible import idle_mean_itl, idle_ttft
from tokenscale.bench.metrics import Recorder
from tokenscale.bench.scenario import group_cold_start
from tokenscale.bench.traces import Trace
from tokenscale_contract.retry_after import retry_after_s
from tokenscale_sim.engine import AdvanceResult, EngineModel, StepResult
from tokenscale_sim.profile import EngineProfile

# How the balancer picks a replica. least-request: Envoy's LEAST_REQUEST, the lighter of two
# random ready replicas (what a Service behind a mesh gets). least-prefill: the replica with the
# fewest prompt tokens still to prefill, lighter first on a tie (a prefill-aware gateway, which
# tokenscale does not render: the bench measures what one would buy, docs/disaggregation.md).
ROUTINGS = ("least-request", "least-prefill")

# Step-noise multipliers drawn per pod, then cycled: enough that a pod's steps do not repeat a
# pattern the policy could pick up within a scrape window.
STEP_NOISE_DRAWS = 4096


class Replica:
    """One pod: gateway queue + engine (+ its prefix cache when the trace has block ids)."""

    __slots__ = (
        "cap",
        "drain_at",
        "ended_at",
        "engine",
        "fleet",
        "in_engine",
        "prefix",
        "queue",
        "ready_at",
        "started_at",
    )

    def __init__(
        self,
        fleet: Fleet,
        started_at: float,
        ready_at: float,
        step_noise: list[float] | None = None,
    ):
        self.fleet = fleet
        profile = fleet.profile
        self.engine = EngineModel(profile, step_noise=step_noise)
        self.engine.clock = ready_at
        self.started_at = started_at
        self.ready_at = ready_at
        self.cap = fleet.cap
        self.queue: deque[tuple[int, float]] = deque()  # (request, when it reached the gateway)
        self.in_engine = 0
        self.drain_at: float | None = None
        self.ended_at: float | None = None
        self.prefix = PrefixCache(profile.kv_capacity_tokens) if fleet.cache_blocks else None

    @property
    def load(self) -> int:
        return self.in_engine + len(self.queue)

    @property
    def pending_prefill(self) -> int:
        """Prompt tokens this replica has still to prefill, its gateway queue's included."""
        prompts = self.fleet._prompt
        queued = sum(int(prompts[rid]) for rid, _ in self.queue)
        return self.engine.pending_prefill_tokens + queued

    def advance(self, t: float, rec: Recorder) -> None:
        """Run the engine up to `t`, feeding queued requests as slots free up."""
        eng = self.engine
        while True:
            self._admit()
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

    def _admit(self) -> None:
        eng = self.engine
        while self.queue and self.in_engine < self.cap:
            rid, sent = self.queue.popleft()
            self.submit(rid, max(eng.clock, sent))

    def submit(self, rid: int, now: float) -> None:
        prompt, out, cached = self.fleet.tokens(rid, self)
        self.engine.add_request(rid, prompt, out, now, output_tokens=out, cached_tokens=cached)
        self.in_engine += 1

    def offer(self, rid: int, now: float) -> bool:
        """Take the request, or False when the gateway's queue is full (a 429)."""
        if self.in_engine < self.cap and not self.queue:
            self.submit(rid, now)
            return True
        bound = self.fleet.queue_bound()
        if bound is not None and len(self.queue) >= bound:
            return False
        self.queue.append((rid, now))
        return True

    def drop(self, rid: int) -> bool:
        """The client went away: out of the queue, or aborted in the engine (vLLM frees its
        blocks). True if the request was still here."""
        for i, (queued, _) in enumerate(self.queue):
            if queued == rid:
                del self.queue[i]
                return True
        if self.engine.abort(rid):
            self.in_engine -= 1
            return True
        return False

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
        clients: ClientModel | None = None,
        hits: I64 | None = None,
        nodes: int = 1,
        rendezvous_s: float = 0.0,
        routing: str = ROUTINGS[0],
    ) -> None:
        """`clients`: how clients behave (bench.clients; the ideal client by default). `hits`:
        cached prompt tokens per request, instead of per-replica prefix caches (the lower
        bound passes what one shared unbounded cache would hit). `nodes`: pods per replica,
        each with its own cold start of `cold_start_s` (drawn per node in a drawn world);
        `rendezvous_s`: what a group waits after its slowest node."""
        self.profile = profile
        self.trace = trace
        self.rec = rec
        self.cold_start_s = cold_start_s
        self.nodes = nodes
        self.rendezvous_s = rendezvous_s
        if routing not in ROUTINGS:
            raise ValueError(f"routing {routing!r}: use one of {', '.join(ROUTINGS)}")
        self.routing = routing
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
        self.refusals = 0  # 429s answered, retried or not
        self.timed_out = 0
        self.clients = clients or ClientModel()
        self._prompt = trace.prompt.tolist()
        self._output = self.clients.outputs(trace, seed).tolist()
        fixed = hits if hits is not None else self.clients.fixed_hits(trace)
        self._hits = fixed.tolist() if fixed is not None else None
        # Per-replica caches only for block ids; a retried request never hits blocks first sent
        # after it was (so no placement beats `seen_before_hits`, the bound's cache).
        self.cache_blocks = self._hits is None and trace.hash_ids is not None
        self._seen_before = seen_before_hits(trace).tolist() if self.cache_blocks else None
        self._events: list[tuple[float, int, int]] = []  # (when, kind, request)
        self._owner: dict[int, Replica] = {}
        self._attempts: dict[int, int] = {}  # 429s per request so far
        self._gave_up: set[int] = set()

    # -- pods -------------------------------------------------------------------------------

    def start(self, n: int, now: float, warm: bool = False) -> None:
        for _ in range(n):
            ready = now if warm else now + self._cold_start()
            self.alive.append(Replica(self, now, ready, self._step_noise()))
        self._refresh(now)

    def _step_noise(self) -> list[float] | None:
        sigma = self.step_noise_sigma
        if sigma <= 0:
            return None
        # exp(N(-sigma^2/2, sigma)) has mean 1: the roofline is the mean step time.
        draws = self.np_rng.lognormal(-sigma * sigma / 2, sigma, STEP_NOISE_DRAWS)
        return [float(x) for x in draws]

    def _cold_start(self) -> float:
        """A replica's: its nodes' cold starts (equal, or each drawn), the slowest one plus the
        rendezvous for a group."""
        return group_cold_start(
            [self._node_cold_start() for _ in range(self.nodes)], self.rendezvous_s
        )

    def _node_cold_start(self) -> float:
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

    def queue_bound(self) -> int | None:
        per_slot = self.clients.queue_per_slot
        return None if per_slot is None else self.cap * per_slot

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

    def tokens(self, rid: int, replica: Replica) -> tuple[int, int, int]:
        """(prompt, output, cached prompt tokens) of a request entering `replica`'s engine."""
        cached = 0
        if self._hits is not None:
            cached = self._hits[rid]
        elif replica.prefix is not None and self._seen_before is not None:
            ids = self.trace.hash_ids[rid] if self.trace.hash_ids is not None else ()
            cached = min(replica.prefix.lookup_and_insert(ids), self._seen_before[rid])
        return self._prompt[rid], self._output[rid], cached

    def arrive(self, rid: int, now: float) -> None:
        """A request reaches the balancer: first sent, or retried after a 429."""
        if rid not in self._attempts:
            self._attempts[rid] = 0
            timeout = self.clients.timeout_s
            if timeout is not None:
                heapq.heappush(self._events, (float(self.trace.arrival[rid]) + timeout, 1, rid))
        if now >= self.next_ready:
            self._refresh(now)
        routable = self.routable
        if not routable:
            self._lose(rid)
            return
        if len(routable) == 1:
            r = routable[0]
        elif self.routing == "least-prefill":
            for c in routable:
                c.advance(now, self.rec)
            r = min(routable, key=lambda c: (c.pending_prefill, c.load))
        else:
            a, b = self.rng.sample(routable, 2)
            a.advance(now, self.rec)
            b.advance(now, self.rec)
            r = a if a.load <= b.load else b
        r.advance(now, self.rec)
        if r.offer(rid, now):
            self._owner[rid] = r
            return
        self.refusals += 1
        attempt = self._attempts[rid] + 1
        if attempt > self.clients.retries:
            self._lose(rid)
            return
        self._attempts[rid] = attempt
        wait = retry_after_s(len(r.queue), r.cap, self.service_s)
        heapq.heappush(self._events, (now + wait, 0, rid))

    def _lose(self, rid: int) -> None:
        self.rejected += 1
        self.rec.on_reject(rid)

    def due(self, now: float) -> None:
        """Retries and client timeouts up to `now`, in time order."""
        events = self._events
        while events and events[0][0] <= now:
            when, kind, rid = heapq.heappop(events)
            if kind == 0:
                if rid not in self._gave_up:
                    self.arrive(rid, when)
            else:
                self._expire(rid, when)

    def _expire(self, rid: int, when: float) -> None:
        """The client gives up unless its first token came by `when`."""
        rec = self.rec
        if not np.isnan(rec.ttft[rid]) or rec.rejected[rid]:
            return
        owner = self._owner.get(rid)
        if owner is not None:
            owner.advance(when, rec)
            if not np.isnan(rec.ttft[rid]) or not owner.drop(rid):
                return
        # else it was waiting to retry a 429: the retry is not sent
        self._gave_up.add(rid)
        self.timed_out += 1
        rec.on_timeout(rid)

    def advance_all(self, now: float) -> None:
        self.due(now)
        for r in self.alive:
            r.advance(now, self.rec)
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

    def replica_seconds(self, until: float) -> float:
        """Seconds every replica (a group: all its nodes together) was alive up to `until`."""
        total = 0.0
        for r in (*self.alive, *self.ended):
            end = min(until, r.ended_at if r.ended_at is not None else until)
            total += max(0.0, end - r.started_at)
        return total

    def gpu_hours(self, until: float) -> float:
        """Replica-seconds times every GPU of a replica (a group's tensor parallel x nodes)."""
        return self.replica_seconds(until) * self.gpus_per_replica / 3600.0

    @cached_property
    def service_s(self) -> float:
        """A mean request's time on an idle replica, for the gateway's Retry-After: computed at
        the first 429, so fleets without a queue bound (the lower bound's) never pay for it."""
        return _mean_service_s(self.profile, self.trace)

    @property
    def has_events(self) -> bool:
        return bool(self._events)


def _mean_service_s(profile: EngineProfile, trace: Trace) -> float:
    """A mean request's time on an idle replica, for the gateway's Retry-After."""
    if not len(trace):
        return 0.0
    prompt = max(1, round(float(trace.prompt.mean())))
    output = max(1, round(float(trace.output.mean())))
    return idle_ttft(profile, prompt) + (output - 1) * idle_mean_itl(profile, prompt, output)

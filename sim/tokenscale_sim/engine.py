"""A clock-free continuous-batching model of one vLLM replica (the V1 scheduler's rules).

API (used by the wall-clock simulator server and by the benchmark in virtual time):

    engine = EngineModel(build_profile("llama-3.1-8b", "h100-80gb"))
    engine.add_request(req_id, prompt_tokens, max_tokens, now, output_tokens=None,
                       cached_tokens=0)   # a prefix-cache hit: those prompt tokens skip prefill
    res = engine.step(now)        # one iteration from max(engine.clock, now); None when idle
        res.start, res.end        # the step's span; tokens are delivered at res.end
        res.tokens                # ids that received one token (first and last included)
        res.first_tokens          # ids whose first token this was
        res.finished              # FinishedRequest records (ttft, mean ITL, queue time, e2e)
        res.preempted             # ids preempted (recompute) in this step
    acc = engine.advance(until)   # run steps while there is work and engine.clock < until
        acc.first_tokens [(id, t)], acc.finished [...], acc.preempted [(id, t)], acc.steps, ...
    engine.abort(req_id)          # a client went away
    engine.num_running, engine.num_waiting, engine.kv_usage, engine.clock, engine.has_work

Time is a float in seconds chosen by the caller; the engine never reads a clock. `engine.clock` is
when the GPU becomes free. Drive it in virtual time by calling `advance(until=t)` before
`add_request(..., now=t)` for each arrival in time order; drive it in wall time by calling
`step(now)`, sleeping until `res.end` and delivering `res.tokens`.

`advance` is `step` plus a fast path: while every running sequence is decoding, nothing can be
admitted and nobody finishes or outgrows the KV cache, the next k steps differ only in context
length, so their durations are computed with O(1) arithmetic each and the per-request state is
updated once, O(running) for the whole run instead of per step. The tests check that `advance`
and step-by-step driving give the same finish times.

Scheduling follows vLLM's V1 scheduler; docs/simulator.md states the rules (token budget, FIFO
admission, chunked prefill, recompute preemption of the most recently admitted request).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from tokenscale_sim.profile import EngineProfile, blocks_for
from tokenscale_sim.results import (
    AdvanceResult,
    FinishedRequest,
    ReqId,
    StepResult,
)

IntervalSink = Callable[[float, int], None]
"""Receives (inter-token interval in seconds, how many tokens had that interval)."""

__all__ = ["AdvanceResult", "EngineModel", "FinishedRequest", "IntervalSink", "ReqId", "StepResult"]


class _Req:
    """Mutable per-request state; counters only, no per-token objects."""

    __slots__ = (
        "arrival",
        "blocks",
        "cached",
        "computed",
        "first_token_at",
        "generated",
        "id",
        "last_token_at",
        "max_tokens",
        "num_tokens",
        "preemptions",
        "prompt",
        "scheduled_at",
        "target",
    )

    def __init__(
        self, req_id: ReqId, prompt: int, max_tokens: int, target: int, now: float, cached: int
    ):
        self.id = req_id
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.target = target  # tokens it will generate before finishing
        self.arrival = now
        self.num_tokens = prompt  # prompt + generated: the tokens whose KV must exist
        self.cached = cached  # prompt tokens found in the prefix cache: never prefilled
        self.computed = cached  # tokens whose KV has been computed (or found cached)
        self.generated = 0
        self.blocks = 0
        self.preemptions = 0
        self.scheduled_at: float | None = None
        self.first_token_at = 0.0
        self.last_token_at = 0.0


class EngineModel:
    """The scheduler state of one replica; see the module docstring for the API."""

    def __init__(
        self,
        profile: EngineProfile,
        on_interval: IntervalSink | None = None,
        step_noise: Sequence[float] | None = None,
    ) -> None:
        """`step_noise`: multipliers applied to successive step times, cycled (the benchmark's
        drawn world: a GPU's step time varies from step to step; the roofline is its mean)."""
        self.profile = profile
        self._noise = list(step_noise) if step_noise else None
        self._noise_i = 0
        self.clock = 0.0
        self.waiting: deque[_Req] = deque()
        self.running: list[_Req] = []
        self.total_blocks = profile.kv_capacity_blocks
        self.free_blocks = self.total_blocks
        self.num_preemptions = 0
        self._on_interval = on_interval
        self._by_id: dict[ReqId, _Req] = {}

    # -- inputs ---------------------------------------------------------------------------------

    def add_request(
        self,
        req_id: ReqId,
        prompt_tokens: int,
        max_tokens: int,
        now: float,
        output_tokens: int | None = None,
        cached_tokens: int = 0,
    ) -> None:
        """Queue a request; `output_tokens` < `max_tokens` models an early stop (EOS).

        `cached_tokens`: the prompt's prefix found in the prefix cache (vLLM's automatic prefix
        caching, on by default in V1). As in vLLM, only whole blocks hit and the last prompt
        token is always computed (it must produce logits)."""
        p = self.profile
        if prompt_tokens < 1 or max_tokens < 1:
            raise ValueError("prompt_tokens and max_tokens must be at least 1")
        if prompt_tokens >= p.max_model_len:
            raise ValueError(f"prompt of {prompt_tokens} tokens exceeds max_model_len")
        if req_id in self._by_id:
            raise ValueError(f"duplicate request id {req_id!r}")
        # Generation stops at max_model_len whatever max_tokens says, as in vLLM.
        target = min(max_tokens, output_tokens or max_tokens, p.max_model_len - prompt_tokens)
        if not self.has_work:
            self.clock = max(self.clock, now)
        if cached_tokens < 0:
            raise ValueError("cached_tokens must be 0 or more")
        bs = p.block_size
        cached = min(cached_tokens, prompt_tokens - 1) // bs * bs
        r = _Req(req_id, prompt_tokens, max_tokens, target, now, cached)
        self._by_id[req_id] = r
        self.waiting.append(r)

    def abort(self, req_id: ReqId) -> bool:
        """Drop a request wherever it is (client disconnected); True if it was known."""
        r = self._by_id.pop(req_id, None)
        if r is None:
            return False
        if r in self.running:
            self.running.remove(r)
        else:
            self.waiting.remove(r)
        self.free_blocks += r.blocks
        r.blocks = 0
        return True

    # -- observation ----------------------------------------------------------------------------

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.free_blocks / self.total_blocks

    @property
    def pending_prefill_tokens(self) -> int:
        """Prompt tokens admitted but not yet computed: the prefill work ahead of a new prompt."""
        waiting = sum(r.prompt - r.computed for r in self.waiting)
        return waiting + sum(max(0, r.prompt - r.computed) for r in self.running)

    # -- one iteration ----------------------------------------------------------------------------

    def step(self, now: float) -> StepResult | None:
        """Schedule and run one iteration starting at max(clock, now); None when idle."""
        if not self.has_work:
            return None
        start = max(self.clock, now)
        res = StepResult(start=start, end=start)
        sched: list[tuple[_Req, int]] = []
        budget = self._schedule_running(sched, res.preempted)
        if not res.preempted:
            self._admit(sched, budget, start)
        if not sched:
            # Only reachable when the queue head cannot fit even an empty cache; capacity checks
            # in build_profile and add_request keep that from happening.
            raise RuntimeError("engine stalled: nothing schedulable")
        res.end = start + self._duration(sched) * self._jitter()
        self._finish_step(sched, res)
        self.clock = res.end
        return res

    def _schedule_running(self, sched: list[tuple[_Req, int]], preempted: list[ReqId]) -> int:
        budget = self.profile.max_num_batched_tokens
        chunked = self.profile.enable_chunked_prefill
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            r = running[i]
            need = r.num_tokens - r.computed
            n = min(need, budget)
            if n < need and not chunked:
                i += 1
                continue
            if not self._reserve(r, n, preempted):
                break  # r itself was preempted; everything after it already was
            sched.append((r, n))
            budget -= n
            i += 1
        return budget

    def _reserve(self, r: _Req, n: int, preempted: list[ReqId]) -> bool:
        """Allocate blocks for n more tokens of r, preempting from the tail of `running`."""
        need = blocks_for(r.computed + n, self.profile.block_size) - r.blocks
        while need > self.free_blocks:
            victim = self.running.pop()
            self._preempt(victim)
            preempted.append(victim.id)
            if victim is r:
                return False
        self.free_blocks -= need
        r.blocks += need
        return True

    def _preempt(self, r: _Req) -> None:
        self.free_blocks += r.blocks
        r.blocks = 0
        # The freed blocks stay in the prefix cache (vLLM evicts them only when it needs room),
        # so the re-admitted request hits its cached prefix again.
        r.computed = r.cached
        r.preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(r)

    def _admit(self, sched: list[tuple[_Req, int]], budget: int, start: float) -> None:
        p = self.profile
        while self.waiting and budget > 0 and len(self.running) < p.max_num_seqs:
            r = self.waiting[0]
            need = r.num_tokens - r.computed
            n = min(need, budget)
            if n < need and not p.enable_chunked_prefill:
                return
            # A cached prefix is charged to the request like computed tokens (vLLM shares those
            # blocks between requests; counting them per request is the conservative side).
            blocks = blocks_for(r.computed + n, p.block_size)
            if blocks > self.free_blocks:
                return
            self.waiting.popleft()
            self.free_blocks -= blocks
            r.blocks = blocks
            if r.scheduled_at is None:
                r.scheduled_at = start
            self.running.append(r)
            sched.append((r, n))
            budget -= n

    def _jitter(self) -> float:
        noise = self._noise
        if noise is None:
            return 1.0
        i = self._noise_i
        self._noise_i = (i + 1) % len(noise)
        return noise[i]

    def _duration(self, sched: list[tuple[_Req, int]]) -> float:
        tokens = 0
        kv_read = 0.0
        pairs = 0.0
        for r, n in sched:
            tokens += n
            kv_read += r.computed + n
            # Query i of a chunk attends to computed + i + 1 context tokens.
            pairs += n * (r.computed + (n + 1) / 2)
        return self.profile.step_seconds(tokens, len(sched), kv_read, pairs)

    def _finish_step(self, sched: list[tuple[_Req, int]], res: StepResult) -> None:
        end = res.end
        sink = self._on_interval
        done = False
        for r, n in sched:
            res.num_scheduled_tokens += n
            r.computed += n
            if r.computed < r.num_tokens:
                continue  # a prefill chunk that does not finish the prompt samples nothing
            r.generated += 1
            r.num_tokens += 1
            res.tokens.append(r.id)
            if r.generated == 1:
                r.first_token_at = end
                res.first_tokens.append(r.id)
                res.prompt_tokens += r.prompt
            elif sink is not None:
                sink(end - r.last_token_at, 1)
            r.last_token_at = end
            if r.generated >= r.target:
                res.finished.append(self._release(r, end))
                done = True
        if done:
            self.running = [r for r in self.running if r.id in self._by_id]

    def _release(self, r: _Req, end: float) -> FinishedRequest:
        del self._by_id[r.id]
        self.free_blocks += r.blocks
        r.blocks = 0
        hit_limit = r.generated >= r.max_tokens or r.num_tokens >= self.profile.max_model_len
        return FinishedRequest(
            req_id=r.id,
            arrival=r.arrival,
            scheduled_at=r.scheduled_at if r.scheduled_at is not None else r.arrival,
            first_token_at=r.first_token_at,
            finished_at=end,
            prompt_tokens=r.prompt,
            generated_tokens=r.generated,
            finish_reason="length" if hit_limit else "stop",
            preemptions=r.preemptions,
        )

    # -- virtual time -----------------------------------------------------------------------------

    def advance(self, until: float) -> AdvanceResult:
        """Run iterations while there is work and the GPU is free before `until`.

        The last step may end after `until` (an iteration is atomic); arrivals at `until` are then
        scheduled at the next step boundary, exactly as in the real engine.
        """
        acc = AdvanceResult()
        while self.has_work and self.clock < until:
            if self._decode_run(until, acc):
                continue
            res = self.step(self.clock)
            if res is not None:
                acc.add_step(res)
        return acc

    def _decode_run(self, until: float, acc: AdvanceResult) -> bool:
        """Fast path: k pure-decode steps at once. False when its conditions do not hold."""
        k = self._decode_run_length()
        if k < 2:
            return False
        running = self.running
        n = len(running)
        ctx = sum(r.computed for r in running)
        p = self.profile
        base = p.fixed_s + n * p.per_seq_s + n * p.transfer_s_per_token
        nfl = n * p.flop_s_per_token
        t = self.clock
        j = 0
        sink = self._on_interval
        noise = self._noise
        # Step j reads C + n(j+1) context tokens (each sequence's context grows by one per step);
        # kv_read and attention pairs are equal for single-token queries.
        while j < k and t < until:
            x = ctx + n * (j + 1)
            mem = p.weight_s + x * p.kv_read_s_per_token
            d = (base + max(mem, nfl + x * p.attn_s_per_pair)) * p.time_scale
            if noise is not None:
                d *= self._jitter()
            if sink is not None:
                sink(d, n)
            t += d
            j += 1
        bs = p.block_size
        for r in running:
            r.computed += j
            r.generated += j
            r.num_tokens += j
            need = blocks_for(r.computed, bs) - r.blocks
            r.blocks += need
            self.free_blocks -= need
            r.last_token_at = t
        acc.steps += j
        acc.busy_s += t - self.clock
        acc.generation_tokens += n * j
        self.clock = t
        return True

    def _decode_run_length(self) -> int:
        """How many pure-decode steps can run with no admission, finish or preemption."""
        running = self.running
        p = self.profile
        n = len(running)
        if n == 0 or n > p.max_num_batched_tokens:
            return 0
        k = p.max_model_len
        for r in running:
            if r.num_tokens - r.computed != 1:
                return 0  # someone is still prefilling
            k = min(k, r.target - r.generated - 1)  # stop before the first finishing step
        if k < 2 or not self._admission_blocked(n):
            return 0
        return self._kv_bounded(k)

    def _admission_blocked(self, n: int) -> bool:
        if not self.waiting:
            return True
        p = self.profile
        budget = p.max_num_batched_tokens - n
        if n >= p.max_num_seqs or budget <= 0:
            return True
        head = self.waiting[0]
        need = head.num_tokens - head.computed
        if need > budget and not p.enable_chunked_prefill:
            return True
        # Free blocks only shrink during a decode run, so a head that does not fit now won't.
        return blocks_for(head.computed + min(need, budget), p.block_size) > self.free_blocks

    def _kv_bounded(self, k: int) -> int:
        """The largest k' <= k whose block growth fits the free blocks (binary search)."""
        bs = self.profile.block_size

        def growth(steps: int) -> int:
            return sum(blocks_for(r.computed + steps, bs) - r.blocks for r in self.running)

        if growth(k) <= self.free_blocks:
            return k
        lo, hi = 0, k  # growth(lo) fits, growth(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if growth(mid) <= self.free_blocks:
                lo = mid
            else:
                hi = mid
        return lo

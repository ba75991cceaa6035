"""The simulator checked against real vLLM: a measured step-cost profile, one short trace, and the
simulator's replay of it in virtual time (the same `EngineModel` the server and benchmark drive).

The live half (starting vLLM, measuring it, replaying the trace over HTTP) is
`e2e/sim_vs_vllm.py`; this module is pure so the test can check the replay and the fit.

Step-cost model, fitted from measurements on the engine (a CPU here):

    step = fixed + per_seq x scheduled sequences + per_token x scheduled tokens

A decode step of n sequences costs fixed + (per_seq + per_token) x n; a lone prefill of P tokens
costs fixed + per_seq + per_token x P. Both are linear, so two least-squares lines give the three
coefficients.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenscale_sim.engine import EngineModel
from tokenscale_sim.profile import BLOCK_SIZE, EngineProfile


@dataclass(frozen=True)
class TraceRequest:
    req_id: str
    arrival: float  # seconds from the start of the replay
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class StepCosts:
    fixed_s: float
    per_seq_s: float
    per_token_s: float
    # vLLM's API server handles each request (validation, sampling parameters, the hand-over to
    # the engine process) one at a time before the scheduler sees it: what a lone request's time
    # to first token has beyond its prefill step.
    frontend_s: float = 0.0


def line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope); at least two distinct x values."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        raise ValueError("line_fit needs at least two distinct x values")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def fit_step_costs(
    decode: Sequence[tuple[int, float]], prefill: Sequence[tuple[int, float]]
) -> StepCosts:
    """Coefficients from decode step times by batch size [(seqs, s)] and lone-prefill step times
    by prompt length [(tokens, s)].

    decode: t = fixed + (per_seq + per_token) n; prefill: t = (fixed + per_seq) + per_token P.
    Worked numbers: decode 8 ms at n=1 and 15 ms at n=8 -> 1 ms per sequence, 7 ms fixed; prefill
    slope 20 us per token -> per_token 20 us, per_seq 0.98 ms.
    """
    d0, d1 = line_fit([n for n, _ in decode], [t for _, t in decode])
    p0, p1 = line_fit([p for p, _ in prefill], [t for _, t in prefill])
    per_token = max(p1, 0.0)
    per_seq = max(d1 - per_token, 0.0)
    fixed = max(d0, 0.0)
    frontend = max(p0 - fixed - per_seq, 0.0)
    return StepCosts(fixed_s=fixed, per_seq_s=per_seq, per_token_s=per_token, frontend_s=frontend)


def measured_profile(
    costs: StepCosts,
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    max_model_len: int,
    kv_capacity_tokens: int,
) -> EngineProfile:
    """A simulator profile with the measured costs: no roofline, the line above."""
    return EngineProfile(
        name="measured",
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        kv_capacity_tokens=kv_capacity_tokens,
        enable_chunked_prefill=True,
        block_size=BLOCK_SIZE,
        fixed_s=costs.fixed_s,
        per_seq_s=costs.per_seq_s,
        weight_s=0.0,
        kv_read_s_per_token=0.0,
        flop_s_per_token=costs.per_token_s,
        attn_s_per_pair=0.0,
    )


def bursty_trace(
    seed: int = 14,
    bursts: Sequence[tuple[float, int]] = ((0.0, 14), (4.0, 6), (8.0, 16)),
    prompt_range: tuple[int, int] = (16, 96),
    output_range: tuple[int, int] = (32, 400),
) -> list[TraceRequest]:
    """Bursts of near-simultaneous arrivals (each request 0-50 ms after its burst's start) with
    log-uniform prompt and output lengths: 36 requests, bursts of 14 and 16 against 8 seqs.
    Outputs are long enough (32-400 tokens) that queues last seconds, well above the 0.1 s at
    which queue lengths are sampled, and prompt plus output stay within 512 tokens."""
    rng = random.Random(seed)

    def log_uniform(lo: int, hi: int) -> int:
        return round(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    out: list[TraceRequest] = []
    for start, count in bursts:
        for _ in range(count):
            out.append(
                TraceRequest(
                    f"r{len(out):03d}",
                    start + rng.uniform(0.0, 0.05),
                    log_uniform(*prompt_range),
                    log_uniform(*output_range),
                )
            )
    return sorted(out, key=lambda r: r.arrival)


@dataclass
class ReplayResult:
    """Per-request TTFT, every inter-token interval, and the waiting count at sample times."""

    ttft: dict[str, float] = field(default_factory=dict)
    itl: list[float] = field(default_factory=list)
    waiting: list[tuple[float, int]] = field(default_factory=list)
    running: list[tuple[float, int]] = field(default_factory=list)
    preemptions: int = 0
    steps: int = 0


def frontend_arrivals(trace: Sequence[TraceRequest], frontend_s: float) -> list[TraceRequest]:
    """When each request reaches the scheduler through a front end that handles one request at a
    time for `frontend_s`: a burst of 14 at t=0 with 5 ms each reaches it over 70 ms."""
    out, free_at = [], 0.0
    for r in sorted(trace, key=lambda r: r.arrival):
        free_at = max(free_at, r.arrival) + frontend_s
        out.append(TraceRequest(r.req_id, free_at, r.prompt_tokens, r.output_tokens))
    return out


def simulate(
    profile: EngineProfile,
    trace: Sequence[TraceRequest],
    sample_every_s: float = 0.1,
    frontend_s: float = 0.0,
) -> ReplayResult:
    """Replay `trace` through the engine model in virtual time, sampling queue lengths; with
    `frontend_s`, requests reach the scheduler through a serial front end (TTFT still counts from
    the trace's arrival)."""
    result = ReplayResult()

    def interval(seconds: float, count: int) -> None:
        result.itl.extend([seconds] * count)

    engine = EngineModel(profile, on_interval=interval)
    arrivals = {r.req_id: r.arrival for r in trace}
    pending = frontend_arrivals(trace, frontend_s)
    next_sample = sample_every_s
    while pending or engine.has_work:
        arrival_next = bool(pending) and pending[0].arrival <= next_sample
        until = pending[0].arrival if arrival_next else next_sample
        acc = engine.advance(until=until)
        for req_id, at in acc.first_tokens:
            result.ttft[str(req_id)] = at - arrivals[str(req_id)]
        result.preemptions += len(acc.preempted)
        result.steps += acc.steps
        if arrival_next:
            # Arriving during a step, it waits for the next one, as in vLLM.
            r = pending.pop(0)
            engine.add_request(r.req_id, r.prompt_tokens, r.output_tokens, r.arrival)
        else:
            result.waiting.append((round(next_sample, 6), engine.num_waiting))
            result.running.append((round(next_sample, 6), engine.num_running))
            next_sample += sample_every_s
    return result


def cumulative(values: Sequence[float], bounds: Sequence[float]) -> list[tuple[float, float]]:
    """Prometheus-style cumulative buckets (upper bound, count), +Inf last."""
    return [(b, float(sum(1 for v in values if v <= b))) for b in bounds] + [
        (math.inf, float(len(values)))
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]

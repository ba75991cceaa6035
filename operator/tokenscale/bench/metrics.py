"""What the fleet records: per-request latencies for the final score and 15 s buckets from which
each tick's `Observation` is read over the last minute (as Prometheus `histogram_quantile` over
`rate(...[1m])` would), plus 2 s concurrency samples for policies with short windows (Knative).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from tokenscale.bench.traces import Trace
from tokenscale.domain.observation import Observation
from tokenscale_sim.engine import AdvanceResult, FinishedRequest, StepResult

WINDOW_S = 60.0
HISTORY_SAMPLES = 256


class Recorder:
    """Per-request outcomes and per-tick metric buckets."""

    def __init__(self, trace: Trace, tick_s: float, window_s: float = WINDOW_S) -> None:
        n = len(trace)
        self.trace = trace
        self._arrival = trace.arrival
        self.ttft = np.full(n, np.nan)
        self.itl = np.full(n, np.nan)
        self.rejected = np.zeros(n, dtype=bool)
        self._ttft: list[float] = []
        self._itl: list[float] = []
        self._out: list[int] = []
        self.buckets: deque[tuple[list[float], list[float], list[int]]] = deque(
            maxlen=max(1, round(window_s / tick_s))
        )
        self.window_s = window_s
        # (time, requests in flight) every sample period, for the baselines' own windows: 256
        # samples at 2 s keep 512 s, past the longest window a baseline reads (AIBrix APA's
        # 180 s, its 300 s cooldown reads no samples).
        self.concurrency: deque[tuple[float, float]] = deque(maxlen=HISTORY_SAMPLES)

    def _first(self, rid: int, t: float) -> None:
        v = t - self._arrival[rid]
        self.ttft[rid] = v
        self._ttft.append(v)

    def _finish(self, f: FinishedRequest) -> None:
        rid = int(f.req_id)
        v = f.mean_itl
        self.itl[rid] = v
        self._itl.append(v)
        self._out.append(f.generated_tokens)

    def on_advance(self, acc: AdvanceResult) -> None:
        for rid, t in acc.first_tokens:
            self._first(int(rid), t)
        for f in acc.finished:
            self._finish(f)

    def on_step(self, res: StepResult) -> None:
        for rid in res.first_tokens:
            self._first(int(rid), res.end)
        for f in res.finished:
            self._finish(f)

    def on_reject(self, rid: int) -> None:
        self.rejected[rid] = True

    def close_bucket(self) -> None:
        self.buckets.append((self._ttft, self._itl, self._out))
        self._ttft, self._itl, self._out = [], [], []

    def window(self) -> tuple[list[float], list[float], list[int]]:
        ttft: list[float] = []
        itl: list[float] = []
        out: list[int] = []
        for a, b, c in self.buckets:
            ttft += a
            itl += b
            out += c
        return ttft, itl, out

    def arrivals(self, start: float, end: float) -> tuple[int, float]:
        """Requests that arrived in (start, end] and their mean prompt length."""
        lo, hi = np.searchsorted(self._arrival, [start, end], side="right")
        n = int(hi - lo)
        mean = float(self.trace.prompt[lo:hi].mean()) if n else math.nan
        return n, mean


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None with no samples (a histogram with no observations)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(pct / 100.0 * len(s)) - 1))
    return s[k]


def observe(
    rec: Recorder,
    now: float,
    pct: float,
    gauges: tuple[float, float, float],
    ready: int,
    starting: tuple[float, ...],
    current: int,
    cap: int,
) -> Observation:
    ttft, itl, out = rec.window()
    span = min(rec.window_s, now)
    n, prompt = rec.arrivals(now - span, now) if span > 0 else (0, math.nan)
    running, waiting, kv = gauges
    return Observation(
        sampled_at=now,
        ttft_s=percentile(ttft, pct),
        itl_s=percentile(itl, pct),
        arrival_rate=n / span if span > 0 else None,
        prompt_tokens=None if math.isnan(prompt) else prompt,
        output_tokens=float(np.mean(out)) if out else None,
        running=running,
        waiting=waiting,
        kv_cache_usage=kv,
        ready_replicas=ready,
        starting_since=starting,
        current_replicas=current,
        current_cap=cap,
    )

"""What the fleet records: per-request latencies for the final score and 15 s buckets from which
each tick's `Observation` is read over the last minute, plus 2 s concurrency samples for policies
with short windows (Knative).

Two ways to read the buckets (`signals`):
- "exact": the p99 of the window's per-request TTFTs and per-request mean ITLs, the gauges as they
  are at the tick: the policy sees the scored quantities themselves.
- "prometheus": what the operator reads in production. TTFT (from arrival, so including the
  gateway queue) and each finished request's mean inter-token latency (vLLM's
  `request_time_per_output_token_seconds`, the operator's ITL signal) are counted into the
  histogram buckets the engines export (`buckets`: vLLM's defaults, or those the operator renders
  around the objectives, `tokenscale_contract.histogram_buckets`), and the percentile is
  `histogram_quantile`'s linear interpolation (`domain.histogram.quantile`) over the window's
  bucket counts. The window, the arrival rate
  and the gauges lag by `scrape_delay_s` (the last scrape and rule evaluation before the tick),
  so the tick sees the fleet as it was one scrape ago.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tokenscale.bench.traces import Trace
from tokenscale.domain.histogram import quantile
from tokenscale.domain.observation import Observation
from tokenscale.domain.scaling_constants import CONSTANTS
from tokenscale.domain.slo_reach import share_above
from tokenscale.domain.ttft_objective import in_reach_percentile
from tokenscale_contract.histogram_buckets import ITL_FAMILY, TTFT_FAMILY
from tokenscale_sim.engine import AdvanceResult, FinishedRequest, StepResult
from tokenscale_sim.metrics import build_1_2_5_buckets

WINDOW_S = 60.0
HISTORY_SAMPLES = 256
SIGNALS = ("exact", "prometheus")

Gauges = tuple[float, float, float]


@dataclass
class _Bucket:
    """One scrape interval's observations."""

    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    out: list[int] = field(default_factory=list)
    # Counts per histogram bucket (the last one is +Inf), "prometheus" signals only.
    ttft_counts: list[float] = field(default_factory=list)
    itl_counts: list[float] = field(default_factory=list)


def _slot(bounds: Sequence[float], value: float) -> int:
    """The histogram bucket (le) that counts `value`: the first bound >= value."""
    return bisect.bisect_left(bounds, value)


def cumulative(counts: Sequence[float], bounds: Sequence[float]) -> list[tuple[float, float]]:
    """Per-bucket counts as Prometheus's cumulative (le, count) pairs, +Inf last."""
    out, total = [], 0.0
    for le, c in zip((*bounds, math.inf), counts, strict=True):
        total += c
        out.append((float(le), total))
    return out


class Recorder:
    """Per-request outcomes and per-tick metric buckets."""

    def __init__(
        self,
        trace: Trace,
        tick_s: float,
        window_s: float = WINDOW_S,
        signals: str = "exact",
        scrape_delay_s: float = 0.0,
        buckets: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """`buckets`: the TTFT and ITL histogram bounds the engines export ("prometheus"
        signals), by vLLM bucket family; the operator renders them from the objectives."""
        if signals not in SIGNALS:
            raise ValueError(f"signals {signals!r}: choose one of {', '.join(SIGNALS)}")
        n = len(trace)
        self.trace = trace
        self._arrival = trace.arrival
        self.ttft = np.full(n, np.nan)
        self.itl = np.full(n, np.nan)
        self.rejected = np.zeros(n, dtype=bool)
        self.timed_out = np.zeros(n, dtype=bool)
        self.signals = signals
        self.histograms = signals == "prometheus"
        if self.histograms and buckets is None:
            raise ValueError("prometheus signals need the engines' histogram buckets")
        self.ttft_bounds = tuple(buckets[TTFT_FAMILY]) if buckets else ()
        self.itl_bounds = tuple(buckets[ITL_FAMILY]) if buckets else ()
        self.delay_buckets = round(scrape_delay_s / tick_s)
        self.scrape_delay_s = self.delay_buckets * tick_s
        self._open = self._new_bucket()
        self._window_buckets = max(1, round(window_s / tick_s))
        self.buckets: deque[_Bucket] = deque(maxlen=self._window_buckets + self.delay_buckets)
        # The gauges at each bucket's close; the oldest is what a delayed reader sees.
        self._gauges: deque[Gauges] = deque(maxlen=self.delay_buckets + 1)
        self.window_s = window_s
        self._prompt_bounds = tuple(build_1_2_5_buckets(int(trace.prompt.max(initial=1))))
        # (time, requests in flight) every sample period, for the baselines' own windows: 256
        # samples at 2 s keep 512 s, past the longest window a baseline reads (AIBrix APA's
        # 180 s, its 300 s cooldown reads no samples).
        self.concurrency: deque[tuple[float, float]] = deque(maxlen=HISTORY_SAMPLES)

    def _first(self, rid: int, t: float) -> None:
        v = t - self._arrival[rid]
        self.ttft[rid] = v
        self._open.ttft.append(v)
        if self.histograms:
            self._open.ttft_counts[_slot(self.ttft_bounds, v)] += 1

    def _finish(self, f: FinishedRequest) -> None:
        rid = int(f.req_id)
        v = f.mean_itl
        self.itl[rid] = v
        self._open.itl.append(v)
        self._open.out.append(f.generated_tokens)
        if self.histograms and f.generated_tokens > 1:
            # vLLM observes request_time_per_output_token only for requests with a decode
            self._open.itl_counts[_slot(self.itl_bounds, v)] += 1

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

    def on_timeout(self, rid: int) -> None:
        """The client gave up before its first token (bench.clients)."""
        self.timed_out[rid] = True

    def close_bucket(self, gauges: Gauges | None = None) -> None:
        """End a scrape interval; `gauges` are the fleet's at that moment (what a scrape saw)."""
        self.buckets.append(self._open)
        self._open = self._new_bucket()
        if gauges is not None:
            self._gauges.append(gauges)

    def _new_bucket(self) -> _Bucket:
        if not self.histograms:
            return _Bucket()
        return _Bucket(
            ttft_counts=[0.0] * (len(self.ttft_bounds) + 1),
            itl_counts=[0.0] * (len(self.itl_bounds) + 1),
        )

    def _visible(self) -> list[_Bucket]:
        """The window's buckets a reader sees: the newest `delay_buckets` are not scraped yet."""
        seen = list(self.buckets)[: len(self.buckets) - self.delay_buckets]
        return seen[-self._window_buckets :]

    def window(self) -> tuple[list[float], list[float], list[int]]:
        ttft: list[float] = []
        itl: list[float] = []
        out: list[int] = []
        for b in self._visible():
            ttft += b.ttft
            itl += b.itl
            out += b.out
        return ttft, itl, out

    def window_quantiles(
        self, pct: float, ttft_pct: float | None = None
    ) -> tuple[float | None, float | None]:
        """(TTFT at `ttft_pct`, else `pct`; ITL at `pct`) from the window's histograms, as
        `histogram_quantile` reads them."""
        ttft = [0.0] * (len(self.ttft_bounds) + 1)
        itl = [0.0] * (len(self.itl_bounds) + 1)
        for b in self._visible():
            ttft = [a + c for a, c in zip(ttft, b.ttft_counts, strict=True)]
            itl = [a + c for a, c in zip(itl, b.itl_counts, strict=True)]
        return (
            quantile(
                (pct if ttft_pct is None else ttft_pct) / 100.0, cumulative(ttft, self.ttft_bounds)
            ),
            quantile(pct / 100.0, cumulative(itl, self.itl_bounds)),
        )

    def gauges_seen(self, live: Gauges) -> Gauges:
        """The gauges a reader sees: `live` without delay, else the scrape `delay_buckets` ago."""
        if self.delay_buckets == 0 or not self._gauges:
            return live
        return self._gauges[0]

    def _prompts(self, start: float, end: float) -> npt.NDArray[np.int64]:
        """Prompt lengths of the requests that arrived in (start, end]."""
        lo, hi = np.searchsorted(self._arrival, [start, end], side="right")
        return self.trace.prompt[lo:hi]

    def _prompt_buckets(self, prompts: npt.NDArray[np.int64]) -> list[tuple[float, float]]:
        """`prompts` as vLLM's cumulative request_prompt_tokens buckets."""
        bounds = self._prompt_bounds
        counts = np.bincount(
            np.searchsorted(bounds, prompts, side="left"), minlength=len(bounds) + 1
        )
        return cumulative(counts.tolist(), bounds)

    def prompt_at(self, start: float, end: float, pct: float) -> float | None:
        """The prompt length at `pct` among requests that arrived in (start, end]: exact, or
        as `histogram_quantile` reads vLLM's request_prompt_tokens buckets ("prometheus")."""
        prompts = self._prompts(start, end)
        if not len(prompts):
            return None
        if not self.histograms:
            return float(np.percentile(prompts, pct, method="inverted_cdf"))
        return quantile(pct / 100.0, self._prompt_buckets(prompts))

    def prompt_share_above(self, start: float, end: float, limit: int) -> float | None:
        """The share of requests arrived in (start, end] whose prompt is longer than `limit`:
        exact, or read from vLLM's buckets as the operator reads it ("prometheus")."""
        prompts = self._prompts(start, end)
        if not len(prompts):
            return None
        if not self.histograms:
            return float(np.mean(prompts > limit))
        return share_above(tuple(self._prompt_buckets(prompts)), limit)

    def arrivals(self, start: float, end: float) -> tuple[int, float]:
        """Requests that arrived in (start, end] and their mean prompt length."""
        prompts = self._prompts(start, end)
        return len(prompts), float(prompts.mean()) if len(prompts) else math.nan


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
    reach_limit: int | None = None,
) -> Observation:
    """What the operator's `to_observation` reads, from the simulated window. With
    `reach_limit` (the longest prompt in reach, as the operator computes it from the plan),
    TTFT and its prompt length are read over the requests in reach, as the operator does."""
    seen = now - rec.scrape_delay_s
    span = min(rec.window_s, seen)
    share = None
    if reach_limit is not None and span > 0:
        share = rec.prompt_share_above(seen - span, seen, reach_limit)
    ttft_pct = in_reach_percentile(pct, share)
    ttft, itl, out = rec.window()
    if rec.histograms:
        ttft_s, itl_s = rec.window_quantiles(pct, ttft_pct)
    else:
        ttft_s, itl_s = percentile(ttft, ttft_pct), percentile(itl, pct)
    n, prompt = rec.arrivals(seen - span, seen) if span > 0 else (0, math.nan)
    prompt_at = rec.prompt_at(seen - span, seen, ttft_pct) if span > 0 else None
    running, waiting, kv = rec.gauges_seen(gauges)
    in_flight = [c for at, c in rec.concurrency if seen - span < at <= seen]
    recent_span = CONSTANTS.recent_rate_window_s
    recent = rec.arrivals(seen - recent_span, seen)[0] if seen >= recent_span else None
    return Observation(
        sampled_at=now,
        ttft_s=ttft_s,
        itl_s=itl_s,
        arrival_rate=n / span if span > 0 else None,
        arrival_rate_recent=None if recent is None else recent / recent_span,
        prompt_tokens=None if math.isnan(prompt) else prompt,
        prompt_tokens_at_percentile=prompt_at,
        out_of_reach_share=share or 0.0,
        output_tokens=float(np.mean(out)) if out else None,
        running=running,
        waiting=waiting,
        in_flight_mean=float(np.mean(in_flight)) if in_flight else None,
        kv_cache_usage=kv,
        ready_replicas=ready,
        starting_since=starting,
        current_replicas=current,
        current_cap=cap,
    )

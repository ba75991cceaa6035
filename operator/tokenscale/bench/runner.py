"""Replays a trace through a fleet under one policy in virtual time and scores the result.

Events in time order: arrivals (routed at once), a concurrency sample every 2 s, a metrics
bucket closed every 15 s (the `Observation`'s minute is four of them), and a policy tick every
15 s (or the policy's own period: Knative decides every 2 s) that advances every pod, reads an
`Observation` over the last minute and applies the policy's replica count and concurrency cap.
GPU time is counted over the trace's duration; requests still in flight at the end run to
completion before scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tokenscale.bench.feasible import feasible
from tokenscale.bench.fleet import Fleet
from tokenscale.bench.metrics import Recorder, observe
from tokenscale.bench.policies import Policy
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace

DRAIN_LIMIT_S = 1800.0
Progress = Callable[[float], None]


@dataclass
class RunResult:
    policy: str
    config: str
    slo_attainment: float
    gpu_hours: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    itl_p95_s: float
    scale_events: int
    rejected: int
    # Clients that gave up before their first token, and 429s answered (bench.clients).
    timed_out: int = 0
    refused_429: int = 0
    # Time series for plots: tick times, replicas asked for, ready, cap; per-minute TTFT p95.
    times: list[float] = field(default_factory=list, repr=False)
    replicas: list[int] = field(default_factory=list, repr=False)
    ready: list[int] = field(default_factory=list, repr=False)
    caps: list[int] = field(default_factory=list, repr=False)
    minute_ttft_p95: list[float] = field(default_factory=list, repr=False)
    gave_up: bool = False
    # Attainment over the requests an idle replica could serve within the objective
    # (bench.feasible), and the share of requests no replica count could serve in time.
    feasible_attainment: float = float("nan")
    infeasible_share: float = float("nan")
    # The lower bound's (attainment, GPU-hours) curve, on its own row (suite.bound_row).
    curve: list[tuple[float, float]] = field(default_factory=list, repr=False)
    # Seconds of replica life over the trace's duration (a multi-node group counts once): the
    # GPU-hours are these times the plan's GPUs per replica / 3600.
    replica_seconds: float = float("nan")

    def row(self) -> dict[str, object]:
        def num(v: float, digits: int) -> float | None:
            return None if v != v else round(v, digits)  # NaN (not measured): null in JSON

        return {
            "policy": self.policy,
            "config": self.config,
            "slo_attainment": num(self.slo_attainment, 5),
            "slo_attainment_feasible": num(self.feasible_attainment, 5),
            "infeasible_share": num(self.infeasible_share, 5),
            "gpu_hours": num(self.gpu_hours, 3),
            "ttft_p50_s": num(self.ttft_p50_s, 4),
            "ttft_p95_s": num(self.ttft_p95_s, 4),
            "ttft_p99_s": num(self.ttft_p99_s, 4),
            "itl_p95_s": num(self.itl_p95_s, 5),
            "scale_events": self.scale_events,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
            "refused_429": self.refused_429,
        }


def simulate(
    trace: Trace,
    scenario: Scenario,
    policy: Policy,
    initial_replicas: int,
    progress: Progress | None = None,
    give_up_below: float | None = None,
) -> RunResult:
    """Replay `trace` under `policy`. With `give_up_below`, stop as soon as the requests already
    missed make that attainment impossible (a search only needs to know it failed); the result
    then has `gave_up` set: its attainment counts requests not yet served as misses and only
    "below the objective" is known."""
    rec = Recorder(
        trace,
        scenario.tick_s,
        signals=scenario.signals,
        scrape_delay_s=scenario.scrape_delay_s,
        buckets=scenario.histogram_buckets,
    )
    fleet = Fleet(
        scenario.profile,
        trace,
        rec,
        scenario.cold_start_s,
        scenario.plan.gpus_per_replica,
        scenario.seed,
        scenario.cold_start_sigma,
        scenario.step_noise_sigma,
        scenario.clients,
        nodes=scenario.nodes,
        rendezvous_s=scenario.group_rendezvous_s,
        routing=scenario.routing,
    )
    fleet.set_cap(policy.initial_cap(scenario))
    fleet.start(initial_replicas, 0.0, warm=True)
    series: dict[str, list[float]] = {"t": [], "n": [], "ready": [], "cap": []}
    arrival = trace.arrival.tolist()
    end = max(trace.duration, scenario.tick_s)
    i, n_req, t = 0, len(arrival), 0.0
    next_tick = next_bucket = 0.0
    period = policy.tick_s or scenario.tick_s
    objectives = scenario.ttft_objectives(trace.prompt)  # per request: give-up check, score
    give_up_at = None if give_up_below is None else (1 - give_up_below) * n_req
    while t <= end or i < n_req:  # every request is replayed, also those after the last sample
        while i < n_req and arrival[i] < t:
            fleet.due(arrival[i])
            fleet.arrive(i, arrival[i])
            i += 1
        fleet.advance_all(t)
        running, waiting, _ = fleet.gauges(t)
        rec.concurrency.append((t, running + waiting))
        if t >= next_bucket:
            rec.close_bucket(fleet.gauges(t))
            next_bucket += scenario.tick_s
        if t >= next_tick:
            _tick(t, scenario, policy, fleet, rec, series)
            next_tick += period
            if progress is not None:
                progress(t / end)
            if give_up_at is not None and _misses(rec, objectives, scenario.itl_s) > give_up_at:
                res = _score(
                    trace, scenario, objectives, policy, fleet, rec, fleet.gpu_hours(end), series
                )
                res.gave_up = True
                res.replica_seconds = fleet.replica_seconds(end)
                return res
        t += scenario.sample_s
    gpu_hours = fleet.gpu_hours(end)
    replica_seconds = fleet.replica_seconds(end)
    _drain(fleet, t)
    res = _score(trace, scenario, objectives, policy, fleet, rec, gpu_hours, series)
    res.replica_seconds = replica_seconds
    return res


def _tick(
    t: float,
    scenario: Scenario,
    policy: Policy,
    fleet: Fleet,
    rec: Recorder,
    series: dict[str, list[float]],
) -> None:
    active = fleet.active()
    ready = sum(1 for r in active if r.ready_at <= t)
    starting = tuple(r.started_at for r in active if r.ready_at > t)
    obs = observe(
        rec,
        t,
        scenario.percentile,
        fleet.gauges(t),
        ready,
        starting,
        len(active),
        fleet.cap,
        policy.reach_limit,
    )
    replicas, cap = policy.decide(t, obs, rec)
    if cap is not None and cap != fleet.cap:
        fleet.set_cap(cap)
    fleet.set_replicas(replicas, t)
    series["t"].append(t)
    series["n"].append(replicas)
    series["ready"].append(ready)
    series["cap"].append(fleet.cap)


def _misses(rec: Recorder, ttft_objectives: npt.NDArray[np.float64], itl_s: float) -> int:
    """Requests already known to miss: rejected, first token late, or finished too slow."""
    missed = (rec.ttft > ttft_objectives) | (rec.itl > itl_s) | rec.rejected
    return int(np.count_nonzero(missed))


def _drain(fleet: Fleet, t: float) -> None:
    limit = t + DRAIN_LIMIT_S
    while t < limit and (fleet.has_events or any(not r.idle for r in fleet.alive)):
        t += 30.0
        fleet.advance_all(t)


def _score(
    trace: Trace,
    scenario: Scenario,
    ttft_objectives: npt.NDArray[np.float64],
    policy: Policy,
    fleet: Fleet,
    rec: Recorder,
    gpu_hours: float,
    series: dict[str, list[float]],
) -> RunResult:
    ttft, itl = rec.ttft, rec.itl
    ok = (ttft <= ttft_objectives) & (np.nan_to_num(itl, nan=np.inf) <= scenario.itl_s)
    can = feasible(trace, scenario.profile, scenario.ttft_s, scenario.itl_s, scenario.ttft_per_1k_s)
    served = ~np.isnan(ttft)
    t_ok = ttft[served] if served.any() else np.array([np.inf])
    i_ok = itl[~np.isnan(itl)] if (~np.isnan(itl)).any() else np.array([np.inf])
    q = np.percentile(t_ok, [50, 95, 99])
    minutes = (trace.arrival // 60).astype(np.int64)
    per_minute: list[float] = []
    for m in range(int(minutes.max()) + 1 if len(minutes) else 0):
        sel = ttft[(minutes == m) & served]
        per_minute.append(float(np.percentile(sel, 95)) if len(sel) else float("nan"))
    return RunResult(
        policy=policy.name,
        config=policy.config,
        slo_attainment=float(ok.mean()) if len(ok) else 1.0,
        feasible_attainment=float(ok[can].mean()) if can.any() else float("nan"),
        infeasible_share=float(1.0 - can.mean()) if len(can) else 0.0,
        gpu_hours=gpu_hours,
        ttft_p50_s=float(q[0]),
        ttft_p95_s=float(q[1]),
        ttft_p99_s=float(q[2]),
        itl_p95_s=float(np.percentile(i_ok, 95)),
        scale_events=fleet.scale_events,
        rejected=int(rec.rejected.sum()),
        timed_out=int(rec.timed_out.sum()),
        refused_429=fleet.refusals,
        times=series["t"],
        replicas=[int(x) for x in series["n"]],
        ready=[int(x) for x in series["ready"]],
        caps=[int(x) for x in series["cap"]],
        minute_ttft_p95=per_minute,
    )

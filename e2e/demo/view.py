"""What the live demo shows, as pure functions of what it sampled: one status line per moment,
one line per autoscaling decision, and the closing summary (attainment, GPU-minutes, decisions).

Nothing here reads a clock, the cluster or the terminal, so tests/unit/test_demo_view.py checks
every figure with made-up samples; `e2e/demo/run.py` feeds it the real ones.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Objective:
    """The service's latency objective (spec.slo) and GPUs per replica (status.plan)."""

    ttft_s: float
    itl_s: float
    percentile: int = 95
    gpus_per_replica: int = 1


@dataclass(frozen=True)
class Frame:
    """One moment of the run: the script's offered load and what the cluster showed.

    `t` is seconds since the scripted day began; the observed figures come from the
    InferenceService status (None before the operator has read any)."""

    t: float
    phase: str
    offered_rps: float
    replicas: int
    ready: int
    desired: int | None = None
    cap: int | None = None
    arrival_rps: float | None = None
    ttft_s: float | None = None
    itl_s: float | None = None


@dataclass(frozen=True)
class Request:
    """What the client saw of one request: its TTFT, its mean inter-token gap (the benchmark's
    per-request ITL, docs/benchmarks.md) and whether it completed."""

    phase: str
    complete: bool
    ttft_s: float | None
    mean_itl_s: float | None


def _seconds(value: float | None, unit_ms: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if unit_ms else f"{value:.2f}s"


def _verdict(value: float | None, objective: float) -> str:
    if value is None:
        return "  "
    return "ok" if value <= objective else "MISS"


def status_line(frame: Frame, objective: Objective) -> str:
    """`t=  95s burst  load 3/s     seen 2.8/s  replicas 3/4 want 5  cap 4   TTFT p95 ...`."""
    seen = "-" if frame.arrival_rps is None else f"{frame.arrival_rps:.1f}/s"
    want = "-" if frame.desired is None else str(frame.desired)
    cap = "-" if frame.cap is None else str(frame.cap)
    p = objective.percentile
    ttft = (
        f"TTFT p{p} {_seconds(frame.ttft_s)}/{_seconds(objective.ttft_s)} "
        f"{_verdict(frame.ttft_s, objective.ttft_s)}"
    )
    itl = (
        f"ITL p{p} {_seconds(frame.itl_s, True)}/{_seconds(objective.itl_s, True)} "
        f"{_verdict(frame.itl_s, objective.itl_s)}"
    )
    return (
        f"t={frame.t:4.0f}s {frame.phase:<6} load {frame.offered_rps:g}/s".ljust(25)
        + f" seen {seen:<6} "
        f"replicas {frame.ready}/{frame.replicas} want {want:<2} cap {cap:<3} {ttft}  {itl}"
    ).rstrip()


def decision_kind(decision: dict[str, Any]) -> str:
    """`scale-up`, `scale-down`, `cap` (batch size only) or `hold` (recorded, nothing changed)."""
    before, after = int(decision["previousReplicas"]), int(decision["replicas"])
    if after > before:
        return "scale-up"
    if after < before:
        return "scale-down"
    return "cap" if decision.get("applied") else "hold"


def decision_line(t: float, decision: dict[str, Any]) -> str:
    """`t= 52s >> scale-up 1 -> 4 replicas, cap 4: <the operator's reason>`."""
    kind = decision_kind(decision)
    applied = "" if decision.get("applied", True) else " (not applied)"
    return (
        f"t={t:4.0f}s >> {kind} {decision['previousReplicas']} -> {decision['replicas']} "
        f"replicas, cap {decision['concurrencyCap']}{applied}: {decision['reason']}"
    )


def phase_line(t: float, phase: str, rps: float, seconds: float) -> str:
    return f"t={t:4.0f}s == {phase}: {rps:g} requests/s for {seconds:.0f} s"


def epoch(stamp: str) -> float:
    """An RFC 3339 time (status.lastDecisions[].time) as Unix seconds."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# ---- the summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    seconds: float
    requests: int
    complete: int
    within_slo: int
    gpu_minutes: float
    static_gpu_minutes: float  # the same run at the peak replica count throughout
    peak_replicas: int
    scale_ups: int
    scale_downs: int
    cap_changes: int

    @property
    def attainment(self) -> float:
        """Share of requests sent that completed within both objectives (0 when none sent)."""
        return self.within_slo / self.requests if self.requests else 0.0


def within_objective(req: Request, objective: Objective) -> bool:
    """Complete, first token within the TTFT objective and its mean gap within the ITL one (a
    one-token answer has no gap)."""
    return (
        req.complete
        and req.ttft_s is not None
        and req.ttft_s <= objective.ttft_s
        and (req.mean_itl_s is None or req.mean_itl_s <= objective.itl_s)
    )


def gpu_minutes(frames: Sequence[Frame], gpus_per_replica: int) -> float:
    """Replicas held (the Deployment's count: each pod holds its GPUs) integrated over time,
    each frame's count held until the next frame: frames at t=0 (2 replicas) and t=30 (4), run
    ending at t=60 -> (2 x 30 + 4 x 30) s x 1 GPU = 180 GPU-seconds = 3 GPU-minutes. The last
    frame closes the run."""
    total = 0.0
    for before, after in itertools.pairwise(frames):
        total += before.replicas * max(0.0, after.t - before.t)
    return total * gpus_per_replica / 60.0


def summarize(
    frames: Sequence[Frame],
    requests: Sequence[Request],
    decisions: Sequence[dict[str, Any]],
    objective: Objective,
) -> Summary:
    seconds = frames[-1].t - frames[0].t if frames else 0.0
    peak = max((f.replicas for f in frames), default=0)
    kinds = [decision_kind(d) for d in decisions]
    return Summary(
        seconds=seconds,
        requests=len(requests),
        complete=sum(1 for r in requests if r.complete),
        within_slo=sum(1 for r in requests if within_objective(r, objective)),
        gpu_minutes=gpu_minutes(frames, objective.gpus_per_replica),
        static_gpu_minutes=peak * seconds * objective.gpus_per_replica / 60.0,
        peak_replicas=peak,
        scale_ups=kinds.count("scale-up"),
        scale_downs=kinds.count("scale-down"),
        cap_changes=kinds.count("cap"),
    )


def summary_lines(summary: Summary, objective: Objective) -> list[str]:
    s = summary
    saved = (
        f", {1 - s.gpu_minutes / s.static_gpu_minutes:.0%} less than {s.peak_replicas} "
        f"replicas throughout ({s.static_gpu_minutes:.1f})"
        if s.static_gpu_minutes > 0
        else ""
    )
    return [
        f"summary over {s.seconds:.0f} s:",
        f"  attainment   {s.attainment:.1%} of {s.requests} requests within TTFT "
        f"{objective.ttft_s:g} s and ITL {objective.itl_s * 1000:g} ms "
        f"({s.complete} complete)",
        f"  GPU-minutes  {s.gpu_minutes:.1f}{saved}",
        f"  decisions    {s.scale_ups} scale-up, {s.scale_downs} scale-down, "
        f"{s.cap_changes} cap change; peak {s.peak_replicas} replicas",
    ]

"""`python -m e2e.demo` (behind `tokenscale demo` and `make demo-live`): the operator doing its job
on the local cluster, live in the terminal.

It starts (or reuses) the local cluster with e2e/cluster/up.sh, installs the chart's CRD and
roles if no one has, and in a namespace of its own (`demo-<n>`) runs a real Prometheus, the
operator (`tokenscale run -n demo-<n>`, watching nothing else), the fleet emulator with one
simulator worker per Ready pod, and one InferenceService. Then it plays a scripted day at the
service's front (calm -> burst -> calm) and prints what the operator sees and decides. At the
end: a summary (attainment, GPU-minutes, decisions), `timeline.png` and `summary.json`.

Every part is the e2e harness's own (e2e/harness.py, e2e/autoscale/, e2e/fleet/). Its processes
start with PR_SET_PDEATHSIG, and Ctrl-C (or SIGTERM) at any point stops the load, deletes the
namespace and stops the fleet (which drains its workers), the operator and Prometheus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from e2e.autoscale.helpers import FleetProcess, Service, Timeline, service
from e2e.autoscale.operator import AutoscaleOperator, ensure_chart
from e2e.demo.plot import plot_timeline
from e2e.demo.terminal import Display
from e2e.demo.view import (
    Frame,
    Objective,
    Request,
    decision_line,
    epoch,
    phase_line,
    status_line,
    summarize,
    summary_lines,
)
from e2e.fleet.loadgen import BackgroundLoad, Phase
from e2e.fleet.prometheus import PrometheusServer
from e2e.harness import OWNER_LABEL, ROOT, Cluster, cluster_env, pid_alive, wait_for

PREFIX = "demo"
TICK_SECONDS = 5
# One L4 replica at cap 4 serves ~1.75 requests/s of 64 + 32 tokens (docs/autoscaling-e2e.md):
# the calm needs one replica, the burst about three and queues until they come; the second calm
# is long enough for the scale-down (stabilization 30 s + the 30 s metrics window forgetting
# the burst, ~60 s in the e2e runs).
SCRIPT = (
    Phase("calm", rate=0.75, duration_s=45),
    Phase("burst", rate=3.0, duration_s=90),
    Phase("calm", rate=0.5, duration_s=105),
)
SERVICE = service(
    "chat",
    scaling={"coldStartSeconds": 5, "scaleDownStabilizationSeconds": 30, "maxReplicas": 6},
)


@dataclass
class RememberingService(Service):
    """The harness's Service, keeping the last object it read (the status's observed figures,
    which the Timeline's samples do not carry)."""

    last: dict[str, Any] = field(default_factory=dict, init=False)

    def get(self) -> dict[str, Any]:
        self.last = super().get()
        return self.last


class Cleanup:
    """Undo steps run last-in first-out, each even when one before it fails or is interrupted."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []
        self.say = say

    def push(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        # A second Ctrl-C must not leave half the processes behind: ignore it while undoing.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self.steps:
                what, step = self.steps.pop()
                self._say(f"cleanup: {what}")
                try:
                    step()
                except Exception as exc:  # every later step still runs
                    self._say(f"cleanup: {what} failed: {exc}")
        finally:
            signal.signal(signal.SIGINT, previous)

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError):  # a closed terminal must not stop the clean-up
            self.say(line)


def start_cluster(say: Callable[[str], None]) -> Cluster:
    """up.sh (starts or reuses; never builds) in a session of its own, so Ctrl-C reaches the
    demo and not the cluster it leaves running for the next run; stopped if interrupted."""
    say("starting or reusing the local cluster (e2e/cluster/up.sh)")
    up = subprocess.Popen(
        ["bash", str(ROOT / "e2e" / "cluster" / "up.sh")],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = up.wait()
    except KeyboardInterrupt:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait()
        raise
    if code != 0:
        raise SystemExit(f"tokenscale demo: the local cluster did not start (up.sh exit {code})")
    return Cluster(cluster_env())


def sweep_old_demos(cluster: Cluster) -> list[str]:
    """Delete `demo-*` namespaces of demo runs on this host that were killed (their pid gone):
    their pods would hold fake GPUs. Other namespaces are never touched."""
    out = cluster.kubectl("get", "namespace", "-l", OWNER_LABEL, "-o", "json").stdout
    gone = []
    for ns in json.loads(out)["items"]:
        name = ns["metadata"]["name"]
        _, _, pid = ns["metadata"]["labels"][OWNER_LABEL].rpartition(".")
        if name.startswith(f"{PREFIX}-") and pid.isdigit() and not pid_alive(int(pid)):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
            gone.append(name)
    return gone


def operator_env(prometheus: PrometheusServer, namespace: str) -> dict[str, str]:
    return {
        "TOKENSCALE_PROMETHEUS_URL": prometheus.url,
        "TOKENSCALE_PROMETHEUS_WINDOW": "30s",
        "TOKENSCALE_PROMETHEUS_TIMEOUT_SECONDS": "3",
        "TOKENSCALE_AUTOSCALE_INTERVAL_SECONDS": str(TICK_SECONDS),
        "TOKENSCALE_WATCH_NAMESPACES": namespace,
    }


@dataclass
class Stage:
    """Everything the scripted day plays against, started by `set_up`."""

    cluster: Cluster
    namespace: str
    fleet: FleetProcess
    svc: RememberingService
    timeline: Timeline


def set_up(work: Path, cleanup: Cleanup, say: Callable[[str], None]) -> Stage:
    cluster = start_cluster(say)
    for name in sweep_old_demos(cluster):
        say(f"deleting {name}, left by a demo run that was killed")
    ensure_chart(cluster)
    namespace = cluster.new_namespace(PREFIX)
    cleanup.push(f"deleting namespace {namespace}", lambda: delete_namespace(cluster, namespace))
    say(f"namespace {namespace}: Prometheus, operator (-n {namespace}), fleet emulator")
    prometheus = PrometheusServer(work / "prometheus", binary=cluster.env["PROMETHEUS_BIN"])
    cleanup.push("stopping Prometheus", prometheus.stop)
    prometheus.start()
    operator = AutoscaleOperator(
        cluster,
        work / "operator.log",
        namespaces=(namespace,),
        extra_env=operator_env(prometheus, namespace),
    )
    cleanup.push("stopping the operator", operator.stop)
    operator.start()
    fleet = FleetProcess(cluster, namespace, work / "fleet", prometheus.sd_dir)
    cleanup.push("stopping the fleet emulator and its workers", fleet.stop)
    fleet.start()
    cluster.apply(SERVICE, namespace)
    svc = RememberingService(cluster, namespace, "chat")
    timeline = Timeline(svc, every=1.0).start()
    cleanup.push("stopping the timeline", timeline.stop)
    say(f"InferenceService {namespace}/chat applied; waiting for its first worker")
    fleet.front("chat", timeout=120)
    return Stage(cluster, namespace, fleet, svc, timeline)


def delete_namespace(cluster: Cluster, namespace: str) -> None:
    """Delete and wait (bounded) until it is gone: the fleet drains each worker as its pod goes."""
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    wait_for(f"namespace {namespace} gone", lambda: cluster.get("namespace", namespace) is None, 90)


def frame_of(stage: Stage, phase: Phase, began: float) -> Frame | None:
    samples = stage.timeline.samples
    if not samples:
        return None
    sample = samples[-1]
    observed = (stage.svc.last.get("status") or {}).get("observed") or {}
    return Frame(
        t=time.time() - began,
        phase=phase.name,
        offered_rps=phase.rate,
        replicas=sample.replicas,
        ready=sample.ready,
        desired=sample.desired,
        cap=sample.cap,
        arrival_rps=observed.get("arrivalRate"),
        ttft_s=observed.get("ttftSeconds"),
        itl_s=observed.get("itlSeconds"),
    )


@dataclass
class Day:
    frames: list[Frame] = field(default_factory=list)
    decisions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    shown: set[tuple[str, str]] = field(default_factory=set)


def new_decisions(stage: Stage, day: Day, began: float) -> Iterator[tuple[float, dict[str, Any]]]:
    for key in sorted(set(stage.timeline.decisions) - day.shown):
        day.shown.add(key)
        decision = stage.timeline.decisions[key]
        at = epoch(decision["time"]) - began
        if at >= -TICK_SECONDS:  # the service's first decisions, before the day, are setup
            day.decisions.append((at, decision))
            yield at, decision


def play(stage: Stage, load: BackgroundLoad, display: Display, objective: Objective) -> Day:
    day = Day()
    began = time.time()
    for i, phase in enumerate(SCRIPT):
        _ = load.start(phase) if i == 0 else load.set(phase)
        display.event(phase_line(time.time() - began, phase.name, phase.rate, phase.duration_s))
        end = time.time() + phase.duration_s
        while time.time() < end:
            frame = frame_of(stage, phase, began)
            for at, decision in new_decisions(stage, day, began):
                display.event(decision_line(at, decision))
            if frame is not None:
                day.frames.append(frame)
                display.status(status_line(frame, objective), frame.t)
            time.sleep(1.0)  # the display's refresh; nothing waits on this for correctness
    return day


def objective_of(stage: Stage) -> Objective:
    spec = SERVICE["spec"]["slo"]
    plan = stage.svc.status().get("plan") or {}
    return Objective(
        ttft_s=float(spec["ttftSeconds"]),
        itl_s=float(spec["itlSeconds"]),
        percentile=int(spec["percentile"]),
        gpus_per_replica=int(plan.get("gpusPerReplica") or 1),
    )


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def finish(
    day: Day, load: BackgroundLoad, objective: Objective, out: Path, display: Display
) -> None:
    display.close()
    display.event("the day is over: waiting for the requests in flight")
    records = load.stop(timeout_s=120)
    requests = [Request(r.phase, r.complete, r.ttft_s, mean(r.gaps_s)) for r in records]
    summary = summarize(day.frames, requests, [d for _, d in day.decisions], objective)
    for line in summary_lines(summary, objective):
        display.event(line)
    plot_timeline(day.frames, day.decisions, objective, out / "timeline.png")
    report = {
        "summary": {**asdict(summary), "attainment": summary.attainment},
        "objective": asdict(objective),
        "decisions": [{"t": round(at, 1), **d} for at, d in day.decisions],
        "frames": [asdict(f) for f in day.frames],
    }
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    display.event(f"timeline: {out / 'timeline.png'}  figures: {out / 'summary.json'}")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "out" / "demo-live", help="output folder")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.out.resolve()
    work = out / "logs"
    shutil.rmtree(work, ignore_errors=True)  # the last run's logs and Prometheus data
    work.mkdir(parents=True)
    display = Display(sys.stdout, live=sys.stdout.isatty() and not args.plain)
    cleanup = Cleanup(display.event)
    # SIGTERM (a CI timeout) and SIGHUP (the terminal closed) clean up as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    began = time.monotonic()
    try:
        stage = set_up(work, cleanup, display.event)
        objective = objective_of(stage)
        load = BackgroundLoad(stage.fleet.front("chat"))
        cleanup.push("stopping the load", lambda: load.stop(timeout_s=30))
        day = play(stage, load, display, objective)
        finish(day, load, objective, out, display)
        return 0
    except (AssertionError, RuntimeError, OSError) as exc:  # the harness's failures: no traceback
        display.close()
        display.event(f"tokenscale demo: failed: {exc}")
        return 1
    except KeyboardInterrupt:
        display.close()
        display.event("interrupted: cleaning up (the load, the namespace, every process started)")
        return 130
    finally:
        display.close()
        cleanup.run()
        display.event(f"done in {time.monotonic() - began:.0f} s; logs in {work}")
        with contextlib.suppress(OSError):
            sys.stdout.flush()

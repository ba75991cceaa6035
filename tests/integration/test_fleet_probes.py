"""The fleet emulator applies a worker pod's rendered probes to the real worker process it runs
(gateway + simulator engine), as a kubelet would: a probe that would fail on a real kubelet fails
here too, and the rendered probes pass on a healthy worker."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from e2e.fleet.probes import PodProbes, Probe, ProbeFailedError, watch
from e2e.fleet.workers import WorkerProcess, WorkerSpec

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef

pytestmark = pytest.mark.integration
SCALE = 0.02  # rendered periods of 5 s become 0.1 s; timeouts and thresholds stay as rendered


def rendered_pod() -> dict[str, Any]:
    """A worker pod exactly as the renderer makes it (Llama-3.1-8B on an L4)."""
    spec = InferenceServiceSpec.model_validate(
        minimal_spec(
            model={"source": "hf://m/8b", "architecture": "llama-3.1-8b"},
            resources={"gpu": "l4-24gb"},
        )
    )
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    ref = ServiceRef("chat", "probes")
    template = render.make_deployment(ref, spec, plan, False)["spec"]["template"]
    return {
        "metadata": {**template["metadata"], "name": "chat-0", "namespace": "probes"},
        "spec": template["spec"],
    }


def worker(pod: dict[str, Any], tmp_path: Path) -> WorkerProcess:
    spec = WorkerSpec.from_pod(pod, "l4-24gb", "llama-3.1-8b")
    assert spec is not None
    tuning = tmp_path / "tuning.json"
    tuning.write_text('{"concurrencyCap": 8, "queueLimit": 32}')
    return WorkerProcess(spec, tmp_path / "w.log", probes=PodProbes.from_pod(pod),
                         probe_period_scale=SCALE)  # fmt: skip


async def test_rendered_probes_pass_on_a_healthy_worker(tmp_path: Path) -> None:
    pod = rendered_pod()
    process = worker(pod, tmp_path)
    probes = process.probes
    assert probes.startup and probes.readiness and probes.liveness
    assert probes.readiness.timeout_s == 5 and probes.readiness.failure_threshold == 3
    try:
        port = await process.start(tmp_path / "tuning.json", time_scale=0.1, drain_grace_s=5)
        changes: list[tuple[bool, str | None]] = []
        watcher = asyncio.create_task(
            watch(port, probes.readiness, SCALE, lambda ok, why: changes.append((ok, why)))
        )
        # Ten readiness periods (scaled): a healthy worker is never taken out.
        await asyncio.sleep(10 * probes.readiness.period_s * SCALE)
        watcher.cancel()
        assert changes == []
    finally:
        await process.stop(10)


async def test_a_startup_probe_on_a_path_the_gateway_does_not_serve_fails_start(
    tmp_path: Path,
) -> None:
    pod = rendered_pod()
    broken = copy.deepcopy(pod)
    startup = broken["spec"]["containers"][0]["startupProbe"]
    startup["httpGet"]["path"] = "/healthz"
    startup["failureThreshold"] = 3
    process = worker(broken, tmp_path)
    try:
        with pytest.raises(ProbeFailedError, match=r"startupProbe GET /healthz failed 3 times"):
            await process.start(tmp_path / "tuning.json", time_scale=0.1, drain_grace_s=5)
    finally:
        await process.stop(10)


async def test_a_frozen_worker_misses_readiness_and_returns_when_it_answers(
    tmp_path: Path,
) -> None:
    process = worker(rendered_pod(), tmp_path)
    # A short timeout so the test is quick; the watcher counts misses as the kubelet does.
    quick = Probe("readinessProbe", "/ready", 0, period_s=0.1, timeout_s=0.5, failure_threshold=2)
    try:
        port = await process.start(tmp_path / "tuning.json", time_scale=0.1, drain_grace_s=5)
        changed = asyncio.Queue[tuple[bool, str | None]]()
        watcher = asyncio.create_task(
            watch(port, quick, 1.0, lambda ok, why: changed.put_nowait((ok, why)))
        )
        assert process.proc is not None
        os.kill(process.proc.pid, signal.SIGSTOP)
        ok, why = await asyncio.wait_for(changed.get(), timeout=30)
        assert not ok and why == "readinessProbe GET /ready: no answer within timeoutSeconds 0.5"
        os.kill(process.proc.pid, signal.SIGCONT)
        ok, why = await asyncio.wait_for(changed.get(), timeout=30)
        assert ok and why is None
        watcher.cancel()
    finally:
        if process.proc is not None and process.proc.returncode is None:
            os.kill(process.proc.pid, signal.SIGCONT)
        await process.stop(10)

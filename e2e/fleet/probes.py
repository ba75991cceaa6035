"""The kubelet's probes, applied to a local worker process as the rendered pod declares them.

Path, port, timeoutSeconds and failureThreshold are used as rendered, since they decide whether a
healthy pod is marked unready or restarted; periodSeconds is multiplied by `period_scale` (the
simulator starts in seconds where vLLM takes minutes). A probe succeeds on an HTTP status from 200
to 399 within its timeout, as the kubelet's HTTP probe does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from tokenscale_contract import interface as contract

# Kubernetes' defaults for fields a probe leaves out.
DEFAULT_PERIOD_S = 10.0
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_FAILURES = 3


class ProbeFailedError(RuntimeError):
    """A probe missed failureThreshold times in a row: the kubelet would act on it."""


@dataclass(frozen=True)
class Probe:
    kind: str
    path: str
    port: int
    period_s: float
    timeout_s: float
    failure_threshold: int

    @classmethod
    def from_container(cls, container: Mapping[str, Any], kind: str) -> Probe | None:
        found = container.get(kind)
        if not found:
            return None
        http = found.get("httpGet") or {}
        port = http.get("port", contract.GATEWAY_PORT)
        if isinstance(port, str):  # a named port: resolve it on the container
            named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
            port = named[port]
        return cls(
            kind=kind,
            path=str(http.get("path", "/")),
            port=int(port),
            period_s=float(found.get("periodSeconds", DEFAULT_PERIOD_S)),
            timeout_s=float(found.get("timeoutSeconds", DEFAULT_TIMEOUT_S)),
            failure_threshold=int(found.get("failureThreshold", DEFAULT_FAILURES)),
        )


@dataclass(frozen=True)
class PodProbes:
    """The three probes of a worker container (None: the pod declares no such probe)."""

    startup: Probe | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodProbes:
        containers = (pod.get("spec") or {}).get("containers") or []
        worker = next((c for c in containers if c.get("name") == "worker"), None)
        if worker is None:
            return cls()
        return cls(
            Probe.from_container(worker, "startupProbe"),
            Probe.from_container(worker, "readinessProbe"),
            Probe.from_container(worker, "livenessProbe"),
        )


async def probe_once(session: aiohttp.ClientSession, gateway_port: int, probe: Probe) -> str | None:
    """None on success, else why it failed. The container port maps to the local gateway port."""
    url = f"http://127.0.0.1:{gateway_port}{probe.path}"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=probe.timeout_s)) as resp:
            if 200 <= resp.status < 400:
                return None
            return f"HTTP {resp.status}"
    except TimeoutError:
        return f"no answer within timeoutSeconds {probe.timeout_s:g}"
    except aiohttp.ClientError as err:
        return f"{type(err).__name__}"


async def until_success(gateway_port: int, probe: Probe, period_scale: float) -> None:
    """The startup probe: success within failureThreshold tries, else ProbeFailedError."""
    last = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(probe.failure_threshold):
            problem = await probe_once(session, gateway_port, probe)
            if problem is None:
                return
            last = problem
            await asyncio.sleep(probe.period_s * period_scale)
    raise ProbeFailedError(
        f"{probe.kind} GET {probe.path} failed {probe.failure_threshold} times (last: {last})"
    )


async def watch(
    gateway_port: int,
    probe: Probe,
    period_scale: float,
    on_change: Callable[[bool, str | None], None],
) -> None:
    """Readiness or liveness: call on_change(False, why) after failureThreshold misses in a row
    and on_change(True, None) on the next success; runs until cancelled."""
    misses, healthy = 0, True
    async with aiohttp.ClientSession() as session:
        while True:
            await asyncio.sleep(probe.period_s * period_scale)
            problem = await probe_once(session, gateway_port, probe)
            misses = 0 if problem is None else misses + 1
            if healthy and misses >= probe.failure_threshold:
                healthy = False
                with contextlib.suppress(Exception):
                    on_change(False, f"{probe.kind} GET {probe.path}: {problem}")
            elif not healthy and problem is None:
                healthy = True
                with contextlib.suppress(Exception):
                    on_change(True, None)

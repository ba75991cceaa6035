"""Fixtures: a worker (gateway + simulator) in this event loop, or as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import pytest
from aiohttp import web

from tokenscale_sim.profile import build_profile
from tokenscale_sim.server import SimServer
from tokenscale_worker.gateway import Gateway
from tokenscale_worker.tuning import Tuning, TuningWatcher

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until_ready(url: str, deadline_s: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail with the last error at the deadline."""
    end = time.monotonic() + deadline_s
    last: object = None
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
                    last = resp.status
            except aiohttp.ClientError as err:
                last = err
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} not ready within {deadline_s} s: {last}")


async def scrape(base: str) -> dict[str, float]:
    """Samples of /metrics as {'name{labels}': value}."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@dataclass
class InProcessWorker:
    base: str
    engine_base: str
    gateway: Gateway
    sim: SimServer
    tuning_path: Path


@pytest.fixture
async def worker(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[InProcessWorker]:
    """Gateway + simulator on free ports in the test's event loop.

    `@pytest.mark.parametrize("worker", [{"time_scale": 5}], indirect=True)` changes the profile.
    """
    opts = dict(getattr(request, "param", {}) or {})
    profile = build_profile(
        "llama-3.1-8b", "h100-80gb", max_model_len=4096, time_scale=opts.get("time_scale", 1.0)
    )
    sim = SimServer(profile, MODEL, {"pod": "sim-0"})
    sim_runner = web.AppRunner(sim.app(), access_log=None, handler_cancellation=True)
    await sim_runner.setup()
    await web.TCPSite(sim_runner, "127.0.0.1", 0).start()
    engine_base = f"http://127.0.0.1:{sim_runner.addresses[0][1]}"
    tuning_path = tmp_path / "tuning.json"
    start = Tuning(opts.get("cap", 256), opts.get("queue", 1024))
    gateway = Gateway(engine_base, start, drain_grace_s=10)
    watcher = TuningWatcher(str(tuning_path), start, gateway.apply_tuning)
    watch = asyncio.create_task(watcher.run())
    gw_runner = web.AppRunner(gateway.app(), access_log=None, handler_cancellation=True)
    await gw_runner.setup()
    await web.TCPSite(gw_runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{gw_runner.addresses[0][1]}"
    await wait_until_ready(f"{base}/ready")
    yield InProcessWorker(base, engine_base, gateway, sim, tuning_path)
    watch.cancel()
    await gw_runner.cleanup()
    await sim_runner.cleanup()


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    base: str
    tuning_path: Path

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[object]:
    """Start `python -m tokenscale_worker.cli serve --engine sim ...` as a real process."""
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(*extra: str) -> WorkerProcess:
        port = free_port()
        tuning = tmp_path / "tuning.json"
        cmd = [
            sys.executable, "-m", "tokenscale_worker.cli", "serve", "--engine", "sim",
            "--model", "llama-3.1-8b", "--gpu", "h100-80gb", "--host", "127.0.0.1",
            "--port", str(port), "--engine-port", "0", "--tuning", str(tuning), *extra,
        ]  # fmt: skip
        log = (tmp_path / f"worker-{port}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        procs.append(proc)
        return WorkerProcess(proc, f"http://127.0.0.1:{port}", tuning)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    for log in logs:
        log.close()

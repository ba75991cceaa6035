"""One simulated replica: a local `tokenscale-worker serve --engine sim` process standing in for
a worker pod's container, started and stopped the way a kubelet would (SIGTERM, then drain)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from e2e.fleet.lifetime import die_with_parent
from e2e.fleet.probes import PodProbes, until_success
from tokenscale_contract import interface as contract

LISTENING = re.compile(r"gateway listening on [^:\s]+:(\d+)")
DRAINING = re.compile(r"draining: (\d+) in flight, (\d+) queued")
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class WorkerSpec:
    """What one pod runs, read from its TOKENSCALE_WORKER_CONFIG and its node's GPU label."""

    namespace: str
    service: str
    pod: str
    model: str
    gpu: str
    served_name: str
    quantization: str | None = None
    tensor_parallel: int = 1
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None

    @classmethod
    def from_pod(cls, pod: dict[str, Any], gpu: str, architecture: str | None) -> WorkerSpec | None:
        """None when the pod carries no worker config (not a tokenscale worker)."""
        meta = pod["metadata"]
        config = _worker_config(pod)
        if config is None:
            return None
        return cls(
            namespace=meta["namespace"],
            service=meta["labels"]["tokenscale.io/service"],
            pod=meta["name"],
            # A catalog architecture from the InferenceService wins over the model source.
            model=architecture or str(config["modelSource"]),
            gpu=gpu,
            served_name=str(config["servedName"]),
            quantization=config.get("quantization"),
            tensor_parallel=int(config.get("tensorParallelSize") or 1),
            max_model_len=config.get("maxModelLen"),
            max_num_seqs=config.get("maxNumSeqs"),
            max_num_batched_tokens=config.get("maxNumBatchedTokens"),
        )

    def argv(self, tuning: Path, time_scale: float, drain_grace_s: float) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "tokenscale_worker.cli",
            "serve",
            "--engine",
            "sim",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--engine-port",
            "0",
            "--model",
            self.model,
            "--gpu",
            self.gpu,
            "--served-model-name",
            self.served_name,
            "--tensor-parallel-size",
            str(self.tensor_parallel),
            "--tuning",
            str(tuning),
            "--time-scale",
            str(time_scale),
            "--drain-grace",
            str(drain_grace_s),
        ]
        optional = {
            "--quantization": self.quantization,
            "--max-model-len": self.max_model_len,
            "--max-num-seqs": self.max_num_seqs,
            "--max-num-batched-tokens": self.max_num_batched_tokens,
        }
        for flag, value in optional.items():
            if value is not None:
                args += [flag, str(value)]
        return args


def _worker_config(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in pod["spec"].get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == contract.CONFIG_ENV and env.get("value"):
                config: dict[str, Any] = json.loads(env["value"])
                return config
    return None


@dataclass
class WorkerProcess:
    """The process, its public port once listening, and how it ended."""

    spec: WorkerSpec
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    port: int | None = None
    started_at: float = field(default_factory=time.time)
    exit_code: int | None = None
    stop_seconds: float | None = None
    # Requests the gateway held when SIGTERM came (in flight + queued), from its drain log line.
    held_at_sigterm: int | None = None
    # The pod's rendered probes, applied as a kubelet would (probes.py); none: wait for /ready.
    probes: PodProbes = field(default_factory=PodProbes)
    probe_period_scale: float = 1.0

    async def start(self, tuning: Path, time_scale: float, drain_grace_s: float) -> int:
        """Spawn, wait for the listening line and for /ready; return the gateway port."""
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv(tuning, time_scale, drain_grace_s),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        self.port = await self._wait_for_port(deadline)
        if self.probes.startup is not None:
            await until_success(self.port, self.probes.startup, self.probe_period_scale)
        await self._wait_ready(deadline)
        return self.port

    async def _wait_for_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            self._check_alive()
            found = LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.spec.pod}: worker did not listen; see {self.log_path}")

    async def _wait_ready(self, deadline: float) -> None:
        """Until the readiness probe first passes (its own path and timeout when rendered)."""
        ready = self.probes.readiness
        path = ready.path if ready else contract.READY_PATH
        timeout = ready.timeout_s if ready else 2.0
        url = f"http://127.0.0.1:{self.port}{path}"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        url, timeout=aiohttp.ClientTimeout(total=timeout)
                    ) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.spec.pod}: worker never became ready; see {self.log_path}")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(
                f"{self.spec.pod}: worker exited with {self.proc.returncode}; see {self.log_path}"
            )

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (the gateway drains queued and in-flight requests), SIGKILL after timeout."""
        if self.proc is None:
            return None
        began = time.monotonic()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self.exit_code = self.proc.returncode
        self.stop_seconds = round(time.monotonic() - began, 3)
        found = DRAINING.search(self.log_path.read_text(errors="replace"))
        self.held_at_sigterm = int(found.group(1)) + int(found.group(2)) if found else None
        return self.exit_code

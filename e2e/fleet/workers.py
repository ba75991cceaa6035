"""One replica: a local `tokenscale-worker serve` process standing in for a worker pod's
container, started and stopped the way a kubelet would (SIGTERM, then drain).

Its engine is the simulator (`--engine sim`, timed as the node's GPU) or real vLLM's CPU build
(`--engine vllm`): then the worker runs exactly what the pod would, `serve --engine vllm --config`
on the worker config the operator rendered into the pod, under the `cpu-test` engine profile the
environment names (TOKENSCALE_ENGINE_PROFILE, TOKENSCALE_VLLM_PYTHON, TOKENSCALE_MODELS_DIR)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from e2e.fleet.lifetime import die_with_parent
from e2e.fleet.probes import PodProbes, until_success
from e2e.fleet.prometheus import free_port
from tokenscale_contract import interface as contract

LISTENING = re.compile(r"gateway listening on [^:\s]+:(\d+)")
DRAINING = re.compile(r"draining: (\d+) in flight, (\d+) queued")
Engine = Literal["sim", "vllm"]
# Seconds from spawn to the first passed readiness probe: the simulator starts in about a second;
# real vLLM on a CPU takes ~50 s alone and minutes when several start at once on two cores (the
# rendered startup probe allows at least 10 minutes, as a GPU pod needs).
START_TIMEOUT_S: dict[Engine, float] = {"sim": 60.0, "vllm": 600.0}


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
    # Nodes per replica: a multi-node group's leader is emulated as the whole group.
    pipeline_parallel: int = 1
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    # The pod's worker config as rendered, what `serve --engine vllm --config` reads.
    config: dict[str, Any] = field(default_factory=dict, compare=False)

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
            pipeline_parallel=int(config.get("pipelineParallelSize") or 1),
            max_model_len=config.get("maxModelLen"),
            max_num_seqs=config.get("maxNumSeqs"),
            max_num_batched_tokens=config.get("maxNumBatchedTokens"),
            config=config,
        )

    def vllm_argv(self, config_path: Path, tuning: Path, drain_grace_s: float) -> list[str]:
        """The pod's own command line, the worker config file in place of the env var."""
        return [
            sys.executable, "-m", "tokenscale_worker.cli", "serve", "--engine", "vllm",
            "--config", str(config_path), "--host", "127.0.0.1", "--port", "0",
            "--tuning", str(tuning), "--drain-grace", str(drain_grace_s),
        ]  # fmt: skip

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
            "--pipeline-parallel-size",
            str(self.pipeline_parallel),
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
        # The latency buckets the pod's vLLM would export (the operator renders them).
        buckets = self.config.get("histogramBuckets")
        if buckets:
            args += ["--custom-histogram-buckets", json.dumps(buckets)]
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
    engine: Engine = "sim"
    # vLLM's server process (the worker's child, leader of the engine's process group) once the
    # gateway listens, and how many processes of that group were left after the worker exited
    # (0: vLLM stopped with it).
    engine_pid: int | None = None
    engine_left: int | None = None
    ready_at: float | None = None
    # Variables the pod's node adds (the cpu-test profile's stand-ins for the pod's mounts).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.log_path.with_suffix(".config.json")

    def command(self, tuning: Path, time_scale: float, drain_grace_s: float) -> list[str]:
        if self.engine == "sim":
            return self.spec.argv(tuning, time_scale, drain_grace_s)
        # In a pod the engine has the pod's network to itself; here its port must not collide
        # with another replica's.
        config = {**self.spec.config, "port": free_port()}
        self.config_path.write_text(json.dumps(config))
        return self.spec.vllm_argv(self.config_path, tuning, drain_grace_s)

    async def start(self, tuning: Path, time_scale: float, drain_grace_s: float) -> int:
        """Spawn, wait for the listening line and for /ready; return the gateway port."""
        argv = self.command(tuning, time_scale, drain_grace_s)
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **self.env},
                preexec_fn=die_with_parent if self.engine == "sim" else _engine_on_spare_cpu,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S[self.engine]
        self.port = await self._wait_for_port(deadline)
        if self.engine == "vllm":  # spawned before the gateway listens
            self.engine_pid = child_of(self.proc.pid)
        if self.probes.startup is not None:
            await until_success(self.port, self.probes.startup, self.probe_period_scale)
        await self._wait_ready(deadline)
        self.ready_at = time.time()
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
        if self.engine_pid is not None:
            left = process_group(self.engine_pid)
            self.engine_left = len(left)
            for pid in left:  # recorded, then never left behind (3 GB each)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return self.exit_code


# A real engine busy-polls a core while it has work; on a GPU node that core is the GPU's host
# thread, here it is shared with the API server, the operator and Prometheus. Niceness 10 keeps
# the control plane answering (a starved API server timed out the emulator's own reads).
ENGINE_NICENESS = 10


def _engine_on_spare_cpu() -> None:
    die_with_parent()
    os.nice(ENGINE_NICENESS)


def child_of(pid: int) -> int | None:
    """The only child of `pid` (the worker's engine), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if len(children) == 1 else None


def process_group(pgid: int) -> list[int]:
    """Live processes of the group: vLLM's API server and its engine core share one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the command's closing parenthesis: state, ppid, pgrp, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found

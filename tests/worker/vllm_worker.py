"""A real worker process with real vLLM (CPU build, tiny model) as its child, configured exactly as
the operator renders it for an InferenceService, with the `cpu-test` engine profile."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.tools import TINY_MODEL_SPEC, TINY_SERVED, tiny_model, vllm_python
from tests.worker.conftest import free_port
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.worker_config import worker_config

SERVED = TINY_SERVED
TINY_SPEC: dict[str, Any] = {"model": TINY_MODEL_SPEC, "resources": {"gpu": "l4-24gb"}}


def rendered_config(spec_doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """The worker config the operator renders for the tiny model's InferenceService (or for
    `spec_doc`)."""
    spec = InferenceServiceSpec.model_validate(TINY_SPEC if spec_doc is None else spec_doc)
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan), plan
    return worker_config(spec, plan, ServiceRef("tiny", "default", uid="u1", generation=1))


@dataclass
class VllmWorker:
    proc: subprocess.Popen[bytes]
    base: str
    tuning_path: Path
    log_path: Path

    def engine_pid(self) -> int:
        """The vLLM server process (the worker's only child)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(children) == 1, f"expected one engine child, found {children}"
        return int(children[0])

    def set_tuning(self, cap: int, queue_limit: int) -> None:
        tmp = self.tuning_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"concurrencyCap": cap, "queueLimit": queue_limit}))
        tmp.replace(self.tuning_path)  # one rename, as a ConfigMap volume swaps its symlink


@contextlib.contextmanager
def vllm_worker(
    workdir: Path,
    cap: int = 8,
    queue_limit: int = 64,
    config: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[VllmWorker]:
    """Start `tokenscale-worker serve --engine vllm` on the rendered config (or `config`), with
    `extra_env` for the pod's mounts; always stopped."""
    model_dir = Path(tiny_model())
    config = rendered_config() if config is None else dict(config)
    # A pod has its own network namespace; here the engine port must not collide with others.
    config["port"] = free_port()
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    tuning = workdir / "tuning.json"
    port = free_port()
    env = {
        **os.environ,
        "TOKENSCALE_ENGINE_PROFILE": "cpu-test",
        "TOKENSCALE_VLLM_PYTHON": vllm_python(),
        # pvc://models/tiny-llama -> <models dir>/tiny-llama
        "TOKENSCALE_MODELS_DIR": str(model_dir.parent),
        **(extra_env or {}),
    }
    cmd = [
        sys.executable, "-m", "tokenscale_worker.cli", "serve", "--engine", "vllm",
        "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
        "--tuning", str(tuning), "--drain-grace", "300",
    ]  # fmt: skip
    log_path = workdir / "worker.log"
    worker = None
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        worker = VllmWorker(proc, f"http://127.0.0.1:{port}", tuning, log_path)
        worker.set_tuning(cap, queue_limit)
        engine: int | None = None
        try:
            yield worker
        finally:
            with contextlib.suppress(AssertionError, OSError):
                engine = worker.engine_pid()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if engine is not None:  # never leave a 3 GB engine behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(engine, signal.SIGKILL)

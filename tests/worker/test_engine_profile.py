"""Engine profiles: the GPU pod's command line is untouched; every CPU-test difference comes from
the profile, applied to the config the operator renders."""

from __future__ import annotations

import pytest

from tests.worker.vllm_worker import rendered_config
from tokenscale_contract.config import WorkerConfig
from tokenscale_worker.engine_profile import (
    CPU_TEST,
    GPU,
    PROFILE_ENV,
    EngineProfileError,
    select,
)
from tokenscale_worker.launcher import build_vllm_args, engine_env, vllm_command

ENV = {"TOKENSCALE_VLLM_PYTHON": "/venv/bin/python", "TOKENSCALE_MODELS_DIR": "/cache"}


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def config(**changes: object) -> WorkerConfig:
    return WorkerConfig.model_validate({**rendered_config(), **changes})


def test_gpu_profile_is_the_plain_command_line() -> None:
    cfg = config(quantization="awq_marlin")
    assert vllm_command(cfg, GPU, ENV) == ["vllm", "serve", *build_vllm_args(cfg)]
    assert flag(vllm_command(cfg, GPU, ENV), "--model") == "/models/tiny-llama"
    assert flag(vllm_command(cfg, GPU, ENV), "--quantization") == "awq_marlin"
    assert "--enforce-eager" not in vllm_command(cfg, GPU, ENV)
    # Only what every profile sets: vLLM keeps idle connections longer than the gateway's pool.
    assert engine_env(GPU, {"A": "1"}) == {"A": "1", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "60"}


def test_cpu_test_profile_applies_every_difference() -> None:
    argv = vllm_command(config(quantization="awq_marlin"), CPU_TEST, ENV)
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(argv, "--model") == "/cache/tiny-llama"
    assert flag(argv, "--dtype") == "float32"
    assert flag(argv, "--max-model-len") == "512"
    assert flag(argv, "--max-num-seqs") == "8"
    assert "--quantization" not in argv
    assert "--enforce-eager" in argv
    env = engine_env(CPU_TEST, {"A": "1"})
    assert env["A"] == "1"
    assert (env["VLLM_TARGET_DEVICE"], env["VLLM_CPU_KVCACHE_SPACE"]) == ("cpu", "1")
    assert env["HF_HUB_OFFLINE"] == "1"
    # Several engines on one machine: unpinned, one OpenMP thread each (not all on core 0).
    assert (env["VLLM_CPU_OMP_THREADS_BIND"], env["OMP_NUM_THREADS"]) == ("nobind", "1")


def test_user_extra_args_follow_the_profile_flags() -> None:
    argv = vllm_command(config(extraArgs=["--seed", "7"]), CPU_TEST, ENV)
    assert argv[-3:] == ["--enforce-eager", "--seed", "7"]


def test_profile_is_chosen_by_the_environment() -> None:
    assert select({}) is GPU
    assert select({PROFILE_ENV: "cpu-test"}) is CPU_TEST
    with pytest.raises(EngineProfileError, match=r"TOKENSCALE_ENGINE_PROFILE='tpu'.*cpu-test, gpu"):
        select({PROFILE_ENV: "tpu"})

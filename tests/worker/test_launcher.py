"""Worker config -> vLLM argument list: sources, flags, conflicts, shell-string rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tokenscale_contract.config import ConfigError, WorkerConfig, load_config
from tokenscale_contract.interface import CONFIG_ENV, ENGINE_PORT, GATEWAY_PORT
from tokenscale_worker.launcher import (
    PLANNED_FLAGS,
    LauncherError,
    build_vllm_args,
    resolve_model,
    validate_extra_args,
    vllm_command,
)

BASE: dict[str, Any] = {
    "modelSource": "hf://meta-llama/Llama-3.1-8B-Instruct",
    "servedName": "chat",
}


def cfg(**overrides: Any) -> WorkerConfig:
    return WorkerConfig.model_validate({**BASE, **overrides})


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_full_argument_list() -> None:
    args = build_vllm_args(
        cfg(revision="abc123", quantization="awq_marlin", dtype="float16", tensorParallelSize=2,
            maxModelLen=8192, gpuMemoryUtilization=0.85, maxNumSeqs=64, maxNumBatchedTokens=4096,
            enablePrefixCaching=False, extraArgs=["--seed", "7", "--disable-uvicorn-access-log"])
    )  # fmt: skip
    assert args == [
        "--model", "meta-llama/Llama-3.1-8B-Instruct", "--revision", "abc123",
        "--served-model-name", "chat", "--quantization", "awq_marlin", "--dtype", "float16",
        "--tensor-parallel-size", "2", "--max-model-len", "8192",
        "--gpu-memory-utilization", "0.85", "--max-num-seqs", "64",
        "--max-num-batched-tokens", "4096", "--no-enable-prefix-caching",
        "--enable-chunked-prefill", "--host", "127.0.0.1", "--port", str(ENGINE_PORT),
        "--seed", "7", "--disable-uvicorn-access-log",
    ]  # fmt: skip


def test_optional_flags_left_out() -> None:
    args = build_vllm_args(cfg())
    for absent in ("--revision", "--quantization", "--max-model-len", "--max-num-seqs"):
        assert absent not in args
    assert vllm_command(cfg())[:2] == ["vllm", "serve"]


def test_engine_port_is_internal() -> None:
    assert ENGINE_PORT != GATEWAY_PORT
    assert flag(build_vllm_args(cfg()), "--host") == "127.0.0.1"


@pytest.mark.parametrize(
    ("source", "model"),
    [
        ("hf://Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
        ("pvc://models/llama/8b", "/models/llama/8b"),
        ("pvc://models", "/models"),
        ("llama-3.1-70b", "meta-llama/Llama-3.1-70B-Instruct"),
    ],
)
def test_model_sources(source: str, model: str) -> None:
    assert resolve_model(source) == model


@pytest.mark.parametrize(
    "source",
    ["hf://just-a-name", "ftp://x/y", "no-scheme-model"],
)
def test_bad_model_sources(source: str) -> None:
    with pytest.raises(LauncherError, match="hf://org/name"):
        resolve_model(source)


@pytest.mark.parametrize(
    "source",
    ["pvc://claim/../../etc/passwd", "pvc://claim/llama/./8b", "hf://org/..", "pvc://c/.."],
)
def test_path_traversal_is_refused(source: str) -> None:
    with pytest.raises(LauncherError, match=r"\. or \.\. path segment"):
        resolve_model(source)


def test_s3_without_the_model_cache_is_refused() -> None:
    with pytest.raises(LauncherError, match="s3:// model is read through the model cache"):
        resolve_model("s3://bucket/llama/8b")


def test_a_cached_model_is_read_from_the_cache_at_its_key_without_a_revision() -> None:
    argv = build_vllm_args(
        cfg(modelSource="hf://org/name", revision="abc123", modelCacheKey="hf-org-name-1")
    )
    assert argv[argv.index("--model") + 1] == "/model-cache/hf-org-name-1"
    assert "--revision" not in argv
    assert resolve_model("s3://b/m", cache_key="k", cache_dir="/x") == "/x/k"


@pytest.mark.parametrize("key", ["a/b", "..", "."])
def test_a_cache_key_that_is_not_one_directory_is_refused(key: str) -> None:
    with pytest.raises(LauncherError, match="not one directory name"):
        resolve_model("s3://b/m", cache_key=key)


def test_revision_only_for_hf() -> None:
    with pytest.raises(LauncherError, match="revision applies only to hf://"):
        build_vllm_args(cfg(modelSource="pvc://claim/m", revision="main"))


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("--max-num-seqs 64", "split it into separate list items"),
        ("--seed\t3", "contains whitespace"),
        ("--x;rm -rf /", "contains whitespace"),
        ("--log-level=$(id)", "shell metacharacter '$'"),
        ("a|b", "shell metacharacter '|'"),
        ("`id`", "shell metacharacter '`'"),
    ],
)
def test_shell_strings_are_rejected_with_the_fix(item: str, fragment: str) -> None:
    problems = validate_extra_args(["--enforce-eager", item])
    assert len(problems) == 1
    assert problems[0].startswith("spec.engine.extraArgs[1]")
    assert fragment in problems[0]


def test_split_suggestion_is_a_list() -> None:
    (problem,) = validate_extra_args(["--max-num-seqs 64"])
    assert '["--max-num-seqs", "64"]' in problem


def test_json_values_are_one_argument() -> None:
    assert validate_extra_args(["--speculative-config", '{"method": "ngram", "k": 3}']) == []
    assert validate_extra_args(['--override-generation-config={"temperature": 0.5}']) == []


@pytest.mark.parametrize(
    "argv",
    [["--tensor-parallel-size", "4"], ["--tensor_parallel_size=4"], ["-tp", "4"], ["--port=9000"],
     ["--model", "m"], ["--no-enable-prefix-caching"], ["--max-num-seqs=8"], ["-q", "fp8"]],
)  # fmt: skip
def test_planned_flags_conflict_by_name(argv: list[str]) -> None:
    (problem,) = validate_extra_args(argv)
    assert problem.startswith(f"spec.engine.extraArgs[0] ({argv[0]!r}) sets --")
    assert "remove it from extraArgs" in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(LauncherError) as err:
        build_vllm_args(cfg(extraArgs=["--port", "1", "--a b"]))
    assert "extraArgs[0]" in str(err.value) and "extraArgs[2]" in str(err.value)


def test_empty_item_rejected() -> None:
    assert validate_extra_args([""]) == [
        "spec.engine.extraArgs[0] is empty or not a string; remove it"
    ]


def test_config_from_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**BASE, "tensorParallelSize": 4}))
    assert load_config(str(path)).tensor_parallel_size == 4
    from_env = load_config(env={CONFIG_ENV: json.dumps(BASE)})
    assert from_env.served_name == "chat"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("{", "not JSON"), (json.dumps({**BASE, "tensorParallelSize": 0}), "tensorParallelSize"),
     (json.dumps({**BASE, "bogus": 1}), "bogus")],
)  # fmt: skip
def test_config_errors_name_the_field(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(str(path))


def test_missing_config_says_how_to_provide_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=CONFIG_ENV):
        load_config(str(tmp_path / "absent.json"), env={})


@pytest.mark.parametrize(
    "argv",
    [["-qfp8"], ["--tensor-parallel=8"], ["--hos=0.0.0.0"], ["--hf-token", "x"],
     ["--trust-remote-code"], ["-t", "2"], ["--max_model_len=4096"]],
)  # fmt: skip
def test_worker_refuses_every_spelling_at_start(argv: list[str]) -> None:
    """The worker runs the same guard before exec: a spec that reached it by another path (an
    older operator, a hand-written config) still cannot override the plan."""
    with pytest.raises(LauncherError) as err:
        build_vllm_args(cfg(extraArgs=argv))
    assert str(err.value).startswith(f"spec.engine.extraArgs[0] ({argv[0]!r}) sets --")


def test_planned_flags_list_every_spelling_of_a_refused_destination() -> None:
    assert PLANNED_FLAGS["-tp"] == PLANNED_FLAGS["--tensor-parallel-size"] == "parallel"
    assert PLANNED_FLAGS["--no-enable-prefix-caching"] == "plan"
    assert PLANNED_FLAGS["--device-memory-utilization"] == "plan"
    assert "--seed" not in PLANNED_FLAGS and "--enforce-eager" not in PLANNED_FLAGS


GROUP = {"tensorParallelSize": 8, "pipelineParallelSize": 2}
LWS = {"LWS_GROUP_SIZE": "2", "LWS_LEADER_ADDRESS": "svc-0.svc.ns"}


def test_a_multi_node_group_launches_the_leader_serving_and_the_worker_headless() -> None:
    leader = build_vllm_args(cfg(**GROUP), environ={**LWS, "LWS_WORKER_INDEX": "0"})
    worker = build_vllm_args(cfg(**GROUP), environ={**LWS, "LWS_WORKER_INDEX": "1"})
    for rank, args in enumerate((leader, worker)):
        assert (flag(args, "--pipeline-parallel-size"), flag(args, "--nnodes")) == ("2", "2")
        assert (flag(args, "--node-rank"), flag(args, "--master-addr")) == (str(rank), LWS[
            "LWS_LEADER_ADDRESS"])  # fmt: skip
        assert flag(args, "--master-port") == "29501"
        assert flag(args, "--distributed-executor-backend") == "mp"
    assert "--headless" not in leader and flag(leader, "--port") == str(ENGINE_PORT)
    assert "--headless" in worker and "--port" not in worker and "--host" not in worker
    assert "--nnodes" not in build_vllm_args(cfg(), environ=LWS)  # single node: none of it


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "$LWS_GROUP_SIZE is unset"),
        ({**LWS, "LWS_GROUP_SIZE": "3", "LWS_WORKER_INDEX": "0"}, "$LWS_GROUP_SIZE is 3"),
        ({**LWS, "LWS_WORKER_INDEX": "2"}, "$LWS_WORKER_INDEX is 2; expected 0 to 1"),
        ({**LWS, "LWS_WORKER_INDEX": "x"}, "$LWS_WORKER_INDEX is x"),
        ({"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}, "$LWS_LEADER_ADDRESS is unset"),
    ],
)
def test_a_group_without_its_webhook_variables_is_refused(
    env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(LauncherError) as err:
        build_vllm_args(cfg(**GROUP), environ=env)
    assert fragment in str(err.value)

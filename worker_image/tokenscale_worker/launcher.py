"""Build the vLLM server's argument list from a `WorkerConfig` (always a list, never a shell line).

The operator calls `validate_extra_args` (tokenscale_contract.extra_args) when a spec is applied,
so a bad `spec.engine.extraArgs` is refused with a precise message before any pod starts; the
worker calls `build_vllm_args` at start and refuses the same problems again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import PurePosixPath

from tokenscale_contract import catalog, vllm_options
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.extra_args import validate_extra_args
from tokenscale_contract.extra_args_policy import REFUSED
from tokenscale_contract.interface import (
    LWS_GROUP_SIZE_ENV,
    LWS_LEADER_ADDRESS_ENV,
    LWS_WORKER_INDEX_ENV,
    MODELS_DIR,
    MULTI_NODE_MASTER_PORT,
)
from tokenscale_contract.model_cache import MODEL_CACHE_MOUNT
from tokenscale_worker.engine_profile import COMMON_ENV, GPU, EngineProfile

# The command the argument list follows.
VLLM_COMMAND = GPU.command

# Every option string of every destination extraArgs may not set (`-tp`, `--tensor-parallel-size`,
# `--no-enable-prefix-caching`, ...) -> the group that refuses it. The guard itself works on
# destinations (extra_args_policy.REFUSED), so abbreviations and other spellings are caught too.
PLANNED_FLAGS: dict[str, str] = {
    name: REFUSED[option.dest].group
    for name, option in vllm_options.table().options.items()
    if option.dest in REFUSED
}


class LauncherError(ValueError):
    """The configuration cannot become a vLLM command line; the message lists every problem."""


# s3:// weights reach a replica only through the shared model cache (a fill Job copies them):
# without a cache key there is nothing to read. The API server refuses such a spec too.
S3_NEEDS_CACHE = (
    "spec.model.source: an s3:// model is read through the model cache: set "
    "spec.model.cache.storageClassName or spec.model.cache.claimName"
)


def resolve_model(
    source: str,
    models_dir: str = MODELS_DIR,
    cache_key: str | None = None,
    cache_dir: str = MODEL_CACHE_MOUNT,
) -> str:
    """The value of vLLM's --model for a model source.

    hf://meta-llama/Llama-3.1-8B-Instruct -> meta-llama/Llama-3.1-8B-Instruct (downloaded by vLLM)
    pvc://models-claim/llama/8b            -> /models/llama/8b (the renderer mounts the claim's
                                              root at /models: render._volumes)
    any source with a cache key            -> /model-cache/<key> (the fill Job's copy on the
                                              shared claim, mounted read-only by the renderer)
    s3://bucket/llama/8b without a key     -> refused: s3:// needs the model cache
    llama-3.1-8b (a catalog id)            -> its Hugging Face repository

    A `.` or `..` segment is refused: pvc://claim/../../etc/passwd would leave the claim.
    """
    scheme, sep, rest = source.partition("://")
    if sep and any(part in (".", "..") for part in rest.split("/")):
        raise LauncherError(
            f"model source {source!r} has a . or .. path segment, which would leave the claim or "
            "repository; give the path inside it"
        )
    if cache_key is not None:
        if "/" in cache_key or cache_key in (".", ".."):
            raise LauncherError(f"model cache key {cache_key!r} is not one directory name")
        return str(PurePosixPath(cache_dir, cache_key))
    if scheme == "s3":
        raise LauncherError(S3_NEEDS_CACHE)
    if not sep:
        if source in catalog.MODELS:
            return catalog.MODELS[source].hf_repo
        raise LauncherError(
            f"model source {source!r} has no scheme; use hf://org/name, pvc://claim/path, "
            f"s3://bucket/path or a catalog id ({', '.join(sorted(catalog.MODELS))})"
        )
    rest = rest.strip("/")
    if scheme == "hf" and rest.count("/") == 1:
        return rest
    if scheme == "pvc" and rest:
        claim_path = rest.split("/", 1)[1] if "/" in rest else ""
        return str(PurePosixPath(models_dir, claim_path))
    raise LauncherError(
        f"model source {source!r} is not understood; use hf://org/name or pvc://claim/path"
    )


def node_rank(cfg: WorkerConfig, environ: Mapping[str, str]) -> int:
    """This pod's place in a multi-node group (0: the leader, which serves), from the variables
    LeaderWorkerSet's pod webhook sets; 0 for a single-node replica."""
    stages = cfg.pipeline_parallel_size
    if stages is None:
        return 0
    size, index = environ.get(LWS_GROUP_SIZE_ENV, ""), environ.get(LWS_WORKER_INDEX_ENV, "")
    if size != str(stages):
        raise LauncherError(
            f"pipelineParallelSize is {stages} but ${LWS_GROUP_SIZE_ENV} is {size or 'unset'}: a "
            "multi-node replica runs as a LeaderWorkerSet group of that size (its pod webhook "
            "sets the variable); is LeaderWorkerSet's webhook running?"
        )
    if not index.isdigit() or not 0 <= int(index) < stages:
        raise LauncherError(
            f"${LWS_WORKER_INDEX_ENV} is {index or 'unset'}; expected 0 to {stages - 1}, set by "
            "LeaderWorkerSet's pod webhook"
        )
    if not environ.get(LWS_LEADER_ADDRESS_ENV):
        raise LauncherError(
            f"${LWS_LEADER_ADDRESS_ENV} is unset; LeaderWorkerSet's pod webhook sets it to the "
            "leader pod's address"
        )
    return int(index)


def multi_node_args(cfg: WorkerConfig, environ: Mapping[str, str]) -> list[str]:
    """vLLM 0.32's multiprocessing launch across nodes (docs/serving/parallelism_scaling.md,
    "Running vLLM with MultiProcessing"; docs/deployment/frameworks/lws.md): every node runs
    `vllm serve` with the same parallel sizes, its `--node-rank` and the leader's address;
    ranks above 0 run `--headless` (no API server, they join the leader's rendezvous)."""
    stages = cfg.pipeline_parallel_size
    if stages is None:
        return []
    rank = node_rank(cfg, environ)
    args = ["--pipeline-parallel-size", str(stages), "--nnodes", str(stages)]
    args += ["--node-rank", str(rank), "--master-addr", environ[LWS_LEADER_ADDRESS_ENV]]
    args += ["--master-port", str(MULTI_NODE_MASTER_PORT), "--distributed-executor-backend", "mp"]
    return args + (["--headless"] if rank > 0 else [])


def _flag_pair(name: str, value: object | None) -> list[str]:
    return [] if value is None else [name, str(value)]


def build_vllm_args(
    cfg: WorkerConfig, profile: EngineProfile = GPU, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The arguments after `vllm serve`, with the engine profile's inputs applied (the `gpu`
    profile changes nothing); raises LauncherError listing every problem."""
    env = os.environ if environ is None else environ
    cfg = cfg.model_copy(update=dict(profile.config_overrides))
    problems = validate_extra_args(cfg.extra_args)
    if cfg.revision is not None and not cfg.model_source.startswith("hf://"):
        problems.append("revision applies only to hf:// model sources; remove it")
    try:
        model = resolve_model(
            cfg.model_source,
            profile.models_dir(env),
            cfg.model_cache_key,
            profile.model_cache_dir(env),
        )
    except LauncherError as err:
        problems.append(str(err))
        model = ""
    if problems:
        raise LauncherError("; ".join(problems))
    args = ["--model", model]
    # A cached copy is one fixed revision already (the fill Job pinned it).
    args += _flag_pair("--revision", None if cfg.model_cache_key else cfg.revision)
    args += ["--served-model-name", cfg.served_name]
    args += _flag_pair("--quantization", cfg.quantization)
    if cfg.allow_deprecated_quantization:
        args.append("--allow-deprecated-quantization")
    args += ["--dtype", cfg.dtype, "--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    across = multi_node_args(cfg, env)
    args += across
    args += _flag_pair("--max-model-len", cfg.max_model_len)
    args += ["--gpu-memory-utilization", str(cfg.gpu_memory_utilization)]
    args += _flag_pair("--max-num-seqs", cfg.max_num_seqs)
    args += _flag_pair("--max-num-batched-tokens", cfg.max_num_batched_tokens)
    args.append(("--" if cfg.enable_prefix_caching else "--no-") + "enable-prefix-caching")
    args.append(("--" if cfg.enable_chunked_prefill else "--no-") + "enable-chunked-prefill")
    if cfg.trust_remote_code:
        args.append("--trust-remote-code")
    if cfg.histogram_buckets:
        # One JSON argument; compact and key-sorted so the same plan renders the same argv.
        buckets = json.dumps(cfg.histogram_buckets, separators=(",", ":"), sort_keys=True)
        args += ["--custom-histogram-buckets", buckets]
    # The gateway owns the public port; the engine is reachable only from inside the pod. A
    # headless rank serves no HTTP at all.
    if "--headless" not in across:
        args += ["--host", "127.0.0.1", "--port", str(cfg.port)]
    return args + list(profile.extra_flags) + list(cfg.extra_args)


def vllm_command(
    cfg: WorkerConfig, profile: EngineProfile = GPU, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The full argv the worker executes (`vllm serve ...` in a GPU pod)."""
    env = os.environ if environ is None else environ
    return [*profile.argv_prefix(env), *build_vllm_args(cfg, profile, env)]


def engine_env(profile: EngineProfile, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine child's environment: the worker's, plus every profile's and this one's."""
    return {**(os.environ if environ is None else environ), **COMMON_ENV, **profile.env}

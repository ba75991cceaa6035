"""Build the vLLM server's argument list from a `WorkerConfig` (always a list, never a shell line).

The operator calls `validate_extra_args` when a spec is applied, so a bad `spec.engine.extraArgs`
is refused with a precise message before any pod starts; the worker calls `build_vllm_args` at
start and refuses the same problems again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from tokenscale.domain import catalog
from tokenscale_worker.config import WorkerConfig
from tokenscale_worker.contract import MODELS_DIR

# The command the argument list follows.
VLLM_COMMAND = ("vllm", "serve")

# Flags tokenscale derives from the plan. Setting them in extraArgs would silently fight the
# planner (e.g. a tensor-parallel size the GPUs were not scheduled for), so it is an error.
PLANNED_FLAGS: dict[str, str] = {
    "--model": "spec.model",
    "--revision": "spec.model",
    "--served-model-name": "spec.model",
    "--quantization": "spec.quantization",
    "-q": "spec.quantization",
    "--dtype": "the capacity plan",
    "--tensor-parallel-size": "the capacity plan",
    "-tp": "the capacity plan",
    "--max-model-len": "the capacity plan",
    "--gpu-memory-utilization": "the capacity plan",
    "--max-num-seqs": "the capacity plan",
    "--max-num-batched-tokens": "the capacity plan",
    "--enable-prefix-caching": "the capacity plan",
    "--no-enable-prefix-caching": "the capacity plan",
    "--enable-chunked-prefill": "the capacity plan",
    "--no-enable-chunked-prefill": "the capacity plan",
    "--port": "the worker contract (the engine port)",
    "--host": "the worker contract (the engine listens on 127.0.0.1)",
}

# Characters a shell would interpret. Arguments reach vLLM through exec, never a shell, so an item
# holding them almost always means someone pasted a command line into one list item.
_SHELL_META = re.compile(r"[\s;&|$`<>()\\\"'*?!{}\[\]~#]")


class LauncherError(ValueError):
    """The configuration cannot become a vLLM command line; the message lists every problem."""


def _flag_name(item: str) -> str:
    """'--tensor_parallel_size=2' -> '--tensor-parallel-size' (vLLM accepts both spellings)."""
    name = item.split("=", 1)[0]
    return name[:2] + name[2:].replace("_", "-") if name.startswith("--") else name


def _is_json_value(text: str) -> bool:
    # vLLM takes JSON objects for some flags (--speculative-config '{"method": ...}'); such an
    # item is one argv entry whatever characters it holds.
    if not text.startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _shell_problem(i: int, item: str) -> str | None:
    value = item.split("=", 1)[1] if item.startswith("--") and "=" in item else item
    if _is_json_value(value) or not _SHELL_META.search(item):
        return None
    field = f"spec.engine.extraArgs[{i}]"
    if re.search(r"\s", item):
        parts = json.dumps(item.split())
        return (
            f"{field} ({item!r}) contains whitespace: extraArgs is an argument list, not a shell "
            f"line; split it into separate list items, e.g. {parts}"
        )
    char = _SHELL_META.search(item).group(0)  # type: ignore[union-attr]
    return (
        f"{field} ({item!r}) contains the shell metacharacter {char!r}: arguments are passed to "
        "vLLM directly, never through a shell; remove it or give each argument its own list item"
    )


def validate_extra_args(args: Sequence[str]) -> list[str]:
    """Problems with user-supplied vLLM arguments; empty when they are fine.

    >>> validate_extra_args(["--max-num-seqs 64"])[0][:40]
    "spec.engine.extraArgs[0] ('--max-num-seq"
    """
    problems: list[str] = []
    for i, item in enumerate(args):
        if not isinstance(item, str) or item == "":
            problems.append(f"spec.engine.extraArgs[{i}] is empty or not a string; remove it")
            continue
        shell = _shell_problem(i, item)
        if shell:
            problems.append(shell)
            continue
        flag = _flag_name(item)
        if flag in PLANNED_FLAGS:
            problems.append(
                f"spec.engine.extraArgs[{i}] sets {flag}, which tokenscale derives from "
                f"{PLANNED_FLAGS[flag]}; remove it from extraArgs and change that instead"
            )
    return problems


def resolve_model(source: str) -> str:
    """The value of vLLM's --model for a model source.

    hf://meta-llama/Llama-3.1-8B-Instruct -> meta-llama/Llama-3.1-8B-Instruct (downloaded by vLLM)
    pvc://models-claim/llama/8b            -> /models/llama/8b (the claim is mounted at /models)
    s3://bucket/llama/8b                   -> /models/bucket/llama/8b (synced by an init container)
    llama-3.1-8b (a catalog id)            -> its Hugging Face repository
    """
    scheme, sep, rest = source.partition("://")
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
        return str(PurePosixPath(MODELS_DIR, claim_path))
    if scheme == "s3" and rest:
        return str(PurePosixPath(MODELS_DIR, rest))
    raise LauncherError(
        f"model source {source!r} is not understood; use hf://org/name, pvc://claim/path or "
        "s3://bucket/path"
    )


def _flag_pair(name: str, value: object | None) -> list[str]:
    return [] if value is None else [name, str(value)]


def build_vllm_args(cfg: WorkerConfig) -> list[str]:
    """The arguments after `vllm serve`; raises LauncherError listing every problem."""
    problems = validate_extra_args(cfg.extra_args)
    if cfg.revision is not None and not cfg.model_source.startswith("hf://"):
        problems.append("revision applies only to hf:// model sources; remove it")
    try:
        model = resolve_model(cfg.model_source)
    except LauncherError as err:
        problems.append(str(err))
        model = ""
    if problems:
        raise LauncherError("; ".join(problems))
    args = ["--model", model]
    args += _flag_pair("--revision", cfg.revision)
    args += ["--served-model-name", cfg.served_name]
    args += _flag_pair("--quantization", cfg.quantization)
    args += ["--dtype", cfg.dtype, "--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    args += _flag_pair("--max-model-len", cfg.max_model_len)
    args += ["--gpu-memory-utilization", str(cfg.gpu_memory_utilization)]
    args += _flag_pair("--max-num-seqs", cfg.max_num_seqs)
    args += _flag_pair("--max-num-batched-tokens", cfg.max_num_batched_tokens)
    args.append(("--" if cfg.enable_prefix_caching else "--no-") + "enable-prefix-caching")
    args.append(("--" if cfg.enable_chunked_prefill else "--no-") + "enable-chunked-prefill")
    # The gateway owns the public port; the engine is reachable only from inside the pod.
    args += ["--host", "127.0.0.1", "--port", str(cfg.port)]
    return args + list(cfg.extra_args)


def vllm_command(cfg: WorkerConfig) -> list[str]:
    """The full argv the worker executes."""
    return [*VLLM_COMMAND, *build_vllm_args(cfg)]

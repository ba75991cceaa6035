"""The launcher's argument lists parsed by vLLM's own CLI parser (the version the image pins).

vLLM lives in its own cached virtual environment, built by `make setup`
(worker_image/scripts/vllm-env.sh). If it is absent the test fails with that command rather than
skipping: a contract nobody checks is no contract; and it never builds inside a test's timeout.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.tools import vllm_python
from tokenscale_worker.config import WorkerConfig
from tokenscale_worker.launcher import PLANNED_FLAGS, build_vllm_args

pytestmark = pytest.mark.contract


# Runs inside the vLLM environment: parse each argument list, report what vLLM understood.
PARSE = r"""
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = make_arg_parser(FlexibleArgumentParser())
options = sorted(s for a in parser._actions for s in a.option_strings)
results = []
for argv in json.load(sys.stdin):
    ns = parser.parse_args(argv)
    validate_parsed_serve_args(ns)
    results.append({k: v for k, v in vars(ns).items()
                    if isinstance(v, (str, int, float, bool, type(None), list))})
json.dump({"options": options, "results": results}, sys.stdout)
"""

CONFIGS = [
    {"modelSource": "hf://meta-llama/Llama-3.1-8B-Instruct", "servedName": "chat"},
    {
        "modelSource": "pvc://models/llama-70b", "servedName": "big", "quantization": "awq_marlin",
        "dtype": "float16", "tensorParallelSize": 4, "maxModelLen": 16384,
        "gpuMemoryUtilization": 0.92, "maxNumSeqs": 128, "maxNumBatchedTokens": 8192,
        "enablePrefixCaching": False, "enableChunkedPrefill": False, "revision": None,
        "extraArgs": ["--seed", "7", "--speculative-config", '{"method": "ngram", '
                      '"num_speculative_tokens": 3, "prompt_lookup_max": 4}'],
    },
    {"modelSource": "hf://Qwen/Qwen2.5-7B-Instruct", "revision": "main", "servedName": "q",
     "quantization": "fp8", "extraArgs": ["--max-logprobs=5"]},
]  # fmt: skip


@pytest.fixture(scope="module")
def vllm_parse() -> dict[str, object]:
    python = vllm_python()
    argvs = [build_vllm_args(WorkerConfig.model_validate(c)) for c in CONFIGS]
    parsed = subprocess.run(
        [python, "-c", PARSE], input=json.dumps(argvs), capture_output=True, text=True,
        timeout=600, check=False, env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"},
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stderr[-4000:]
    result: dict[str, object] = json.loads(parsed.stdout)
    return result


@pytest.mark.timeout(2400)
def test_vllm_parses_our_arguments(vllm_parse: dict[str, object]) -> None:
    results = vllm_parse["results"]
    assert isinstance(results, list)
    small, big, qwen = results
    assert small["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert small["served_model_name"] == ["chat"]
    assert small["enable_prefix_caching"] is True and small["enable_chunked_prefill"] is True
    assert (small["host"], small["port"]) == ("127.0.0.1", 8001)
    assert big["model"] == "/models/llama-70b"
    assert (big["tensor_parallel_size"], big["max_model_len"], big["max_num_seqs"]) == (
        4,
        16384,
        128,
    )
    assert (big["quantization"], big["dtype"], big["gpu_memory_utilization"]) == (
        "awq_marlin", "float16", 0.92,
    )  # fmt: skip
    assert big["max_num_batched_tokens"] == 8192 and big["seed"] == 7
    assert big["enable_prefix_caching"] is False and big["enable_chunked_prefill"] is False
    assert (qwen["revision"], qwen["quantization"], qwen["max_logprobs"]) == ("main", "fp8", 5)


@pytest.mark.timeout(2400)
def test_every_planned_flag_is_a_real_vllm_option(vllm_parse: dict[str, object]) -> None:
    options = vllm_parse["options"]
    assert isinstance(options, list)
    missing = [f for f in PLANNED_FLAGS if f not in options]
    assert missing == [], f"vLLM no longer knows {missing}; update launcher.PLANNED_FLAGS"

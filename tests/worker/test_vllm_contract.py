"""The launcher's argument lists parsed by vLLM's own CLI parser (the version the image pins).

vLLM lives in its own cached virtual environment, built by `make setup`
(worker_image/scripts/vllm-env.sh). If it is absent the test fails with that command rather than
skipping: a contract nobody checks is no contract; and it never builds inside a test's timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.tools import vllm_python
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.extra_args_guard import option_problems
from tokenscale_contract.extra_args_policy import REFUSED
from tokenscale_contract.histogram_buckets import slo_buckets
from tokenscale_contract.vllm_options import walk
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
                    if isinstance(v, (str, int, float, bool, type(None), list, dict))})
json.dump({"options": options, "results": results}, sys.stdout)
"""

CONFIGS = [
    {"modelSource": "hf://meta-llama/Llama-3.1-8B-Instruct", "servedName": "chat",
     "histogramBuckets": slo_buckets(1.0, 0.05)},
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
# A replica across two nodes (405B bf16, TP 8 x PP 2): the leader and the worker pod of one
# LeaderWorkerSet group, with the variables LWS's pod webhook sets.
GROUP = {"modelSource": "hf://meta-llama/Llama-3.1-405B-Instruct", "servedName": "huge",
         "tensorParallelSize": 8, "pipelineParallelSize": 2}  # fmt: skip
LWS_ENV = {"LWS_GROUP_SIZE": "2", "LWS_LEADER_ADDRESS": "huge-0.huge.ns"}


def _argvs() -> list[list[str]]:
    single = [build_vllm_args(WorkerConfig.model_validate(c), environ={}) for c in CONFIGS]
    group = WorkerConfig.model_validate(GROUP)
    ranks = [build_vllm_args(group, environ={**LWS_ENV, "LWS_WORKER_INDEX": r}) for r in "01"]
    return single + ranks


@pytest.fixture(scope="module")
def vllm_parse() -> dict[str, object]:
    python = vllm_python()
    argvs = _argvs()
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
    small, big, qwen, leader, worker = results
    assert small["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert small["served_model_name"] == ["chat"]
    assert small["enable_prefix_caching"] is True and small["enable_chunked_prefill"] is True
    assert (small["host"], small["port"]) == ("127.0.0.1", 8001)
    assert small["custom_histogram_buckets"] == slo_buckets(1.0, 0.05)
    assert big.get("custom_histogram_buckets") is None  # none rendered: vLLM's defaults
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
    for rank, ns in enumerate((leader, worker)):
        assert (ns["tensor_parallel_size"], ns["pipeline_parallel_size"], ns["nnodes"]) == (8, 2, 2)
        assert (ns["node_rank"], ns["master_addr"], ns["master_port"]) == (
            rank, "huge-0.huge.ns", 29501,
        )  # fmt: skip
        assert ns["distributed_executor_backend"] == "mp"
    # the leader serves behind the gateway; the worker runs vLLM's headless mode, no API server
    assert leader["headless"] is False and (leader["host"], leader["port"]) == ("127.0.0.1", 8001)
    assert worker["headless"] is True


@pytest.mark.timeout(2400)
def test_every_planned_flag_is_a_real_vllm_option(vllm_parse: dict[str, object]) -> None:
    options = vllm_parse["options"]
    assert isinstance(options, list)
    missing = [f for f in PLANNED_FLAGS if f not in options]
    assert missing == [], f"vLLM no longer knows {missing}; update launcher.PLANNED_FLAGS"


# --- The extraArgs guard against vLLM's own parser ------------------------------------------
# vllm_options.json must be vLLM's option table, and the guard's reading of each hostile argument
# (which destination it sets, or that vLLM refuses it) must be vLLM's own.

ROOT = Path(__file__).parents[2]

# Runs inside the vLLM environment: `vllm serve --model m <argv>` parsed as vLLM's CLI main() does
# (top-level parser, serve subcommand), reporting the destinations each argv changed, or an error.
HOSTILE_PARSE = r"""
import contextlib, io, json, sys
from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.utils.argparse_utils import FlexibleArgumentParser

def parse(argv):
    parser = FlexibleArgumentParser(prog="vllm")
    parser.add_argument("-v", "--version", action="version", version="x")
    ServeSubcommand().subparser_init(parser.add_subparsers(required=False, dest="subparser"))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return vars(parser.parse_args(["serve", "--model", "m", *argv]))

base = parse([])
out = []
for argv in json.load(sys.stdin):
    try:
        ns = parse(argv)
    except (SystemExit, Exception) as exc:
        out.append({"error": type(exc).__name__})
        continue
    out.append({"changed": sorted(k for k in ns if ns[k] != base.get(k))})
json.dump(out, sys.stdout)
"""

# The bypasses, then more of the same family; values differ from vLLM's defaults so the
# destination shows up as changed.
HOSTILE_ARGVS: list[list[str]] = [
    ["-qfp8"], ["--tensor-parallel=8"], ["--max-model=1000000"], ["--gpu-memory=0.99"],
    ["--hos=0.0.0.0"], ["--por=9000"], ["--trust-remote-code"], ["--pipeline-parallel-size", "4"],
    ["-dp", "4"], ["--uds", "/tmp/x.sock"], ["--allowed-local-media-path", "/"],
    ["--hf-token", "hf_secret"], ["--api-key", "sk-secret"],
    ["-t", "2"], ["-tp=2"], ["--tensor_parallel_size=2"], ["--max_model_len=4096"],
    ["--served_model_name=x"], ["--quant", "fp8"], ["-q", "fp8"], ["-n", "2"], ["-r", "1"],
    ["-pcp", "2"], ["--data-parallel-size-l", "2"], ["--kv-cache-dt", "fp8"],
    ["--enable-prefix", "--no-enable-chunked"], ["--trust-rem"], ["--chat-templ", "x.jinja"],
    ["--tool-parser-pl", "p.py"], ["--hf_token=x"], ["--api_k", "k"], ["--revis", "main"],
    ["--dtyp", "float16"], ["--max-num-s", "8"], ["--max-num-b", "1024"],
    ["--gpu_memory_utilization=0.5"], ["--host", "0.0.0.0"], ["--port", "9001"],
    ["--seed", "7"], ["--enforce-eager"], ["--max-logp=5"], ["-O3"], ["-O", "2"],
    ["--speculative-config.method", "ngram"], ["--reasoning-parser", "deepseek_r1"],
    ["-dc", '{"a":1}'], ["--disable-log-requests"], ["--max", "5"], ["7"], ["-dp4"],
    ["--omni"], ["--tokenizer-mode", "slow"], ["--tokeniz", "x"], ["--", "--port", "9000"],
]  # fmt: skip


@pytest.fixture(scope="module")
def vllm_hostile() -> dict[str, object]:
    python = vllm_python()
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    snapshot = subprocess.run(
        [python, str(ROOT / "hack" / "vllm_options_snapshot.py")], capture_output=True,
        text=True, timeout=600, check=False, env=env,
    )  # fmt: skip
    assert snapshot.returncode == 0, snapshot.stderr[-4000:]
    parsed = subprocess.run(
        [python, "-c", HOSTILE_PARSE], input=json.dumps(HOSTILE_ARGVS), capture_output=True,
        text=True, timeout=600, check=False, env=env,
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stderr[-4000:]
    return {"snapshot": snapshot.stdout, "results": json.loads(parsed.stdout)}


@pytest.mark.timeout(2400)
def test_option_snapshot_is_vllms_table(vllm_hostile: dict[str, object]) -> None:
    checked_in = (ROOT / "contract" / "tokenscale_contract" / "vllm_options.json").read_text()
    assert vllm_hostile["snapshot"] == checked_in, (
        "vLLM's option table changed: regenerate with hack/vllm_options_snapshot.py "
        "and review extra_args_policy.REFUSED"
    )


@pytest.mark.timeout(2400)
@pytest.mark.parametrize(
    "index", range(len(HOSTILE_ARGVS)), ids=[" ".join(a) for a in HOSTILE_ARGVS]
)
def test_guard_reads_arguments_as_vllm_does(vllm_hostile: dict[str, object], index: int) -> None:
    argv = HOSTILE_ARGVS[index]
    results = vllm_hostile["results"]
    assert isinstance(results, list)
    vllm = results[index]
    ours = walk(argv)
    if any(res.kind != "option" for _, res in ours):
        # The guard calls it unknown, ambiguous or a stray value: vLLM must refuse the line.
        assert "error" in vllm, f"vLLM accepted {argv}: {vllm}"
        return
    assert "changed" in vllm, f"vLLM refused {argv} ({vllm}) but the guard resolved it"
    for _, res in ours:
        assert res.options[0].dest in vllm["changed"], (argv, res, vllm)
    refused = {res.options[0].dest for _, res in ours} & set(REFUSED)
    assert bool(option_problems(argv)) == bool(refused)


# ---- quantization as vLLM sees it -----------------------------------------------------------
# For every example and every checkpoint format, the launcher's argument list runs through
# vLLM's own parser and ModelConfig checks on CPU against a local model directory whose
# config.json carries the quantization_config that kind of checkpoint really has (a mismatch such
# as `--quantization fp8` on Meta's fbgemm_fp8 405B checkpoint is refused there, as on a GPU).

# The quantization_config blocks published checkpoints carry (fields vLLM reads).
QUANTIZATION_CONFIGS: dict[str, dict[str, object] | None] = {
    "bf16": None,
    # meta-llama/Llama-3.1-405B-Instruct-FP8
    "fbgemm_fp8": {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
                   "modules_to_not_convert": ["lm_head"]},
    # block-quantized fp8 checkpoints (e.g. Qwen/Qwen3-8B-FP8)
    "fp8": {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3",
            "weight_block_size": [128, 128]},
    # RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8 (llm-compressor, FP8 dynamic)
    "compressed-tensors-fp8": {
        "quant_method": "compressed-tensors", "format": "float-quantized",
        "quantization_status": "compressed", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
                        "dynamic": False, "symmetric": True},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                                  "dynamic": True, "symmetric": True}}},
    },
    # RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w8a8
    "compressed-tensors-int8": {
        "quant_method": "compressed-tensors", "format": "int-quantized",
        "quantization_status": "compressed", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "int", "strategy": "channel",
                        "dynamic": False, "symmetric": True},
            "input_activations": {"num_bits": 8, "type": "int", "strategy": "token",
                                  "dynamic": True, "symmetric": True}}},
    },
    # hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True,
            "version": "gemm"},
    # hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False,
             "sym": True, "damp_percent": 0.01},
}  # fmt: skip

MODEL_CONFIG_CHECK = r"""
import json, os, sys
from vllm.engine.arg_utils import EngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = make_arg_parser(FlexibleArgumentParser())
results = []
for case in json.load(sys.stdin):
    os.makedirs(case["dir"], exist_ok=True)
    with open(os.path.join(case["dir"], "config.json"), "w") as f:
        json.dump(case["config"], f)
    ns = parser.parse_args(case["argv"])
    ns.model, ns.tokenizer, ns.revision = case["dir"], case["dir"], None
    try:
        mc = EngineArgs.from_cli_args(ns).create_model_config()
        results.append({"ok": True, "quantization": mc.quantization})
    except Exception as e:  # vLLM's own refusal, reported to the test
        results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
json.dump(results, sys.stdout)
"""


def _llama_config(arch_id: str, quantization: dict[str, object] | None) -> dict[str, object]:
    from tokenscale_contract import catalog

    arch = catalog.model(arch_id)
    config: dict[str, object] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": arch.hidden_size, "intermediate_size": arch.hidden_size * 2,
        "num_attention_heads": arch.attention_heads, "num_key_value_heads": arch.kv_heads,
        "num_hidden_layers": 2, "vocab_size": 1024, "max_position_embeddings": arch.max_context,
        "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5,
    }  # fmt: skip
    if quantization is not None:
        config["quantization_config"] = quantization
    return config


def _rendered_argv(doc: dict[str, object]) -> tuple[list[str], str, str]:
    """The argv the launcher builds from the config the operator renders for a spec, with the
    checkpoint format and catalog architecture it names."""
    from tokenscale.api.v1alpha1 import InferenceServiceSpec
    from tokenscale.domain import capacity
    from tokenscale.domain.names import ServiceRef
    from tokenscale.domain.worker_config import worker_config
    from tokenscale_contract import catalog

    spec = InferenceServiceSpec.model_validate(doc)
    plan = capacity.plan(spec)
    assert isinstance(plan, capacity.Plan), plan
    cfg = WorkerConfig.model_validate(worker_config(spec, plan, ServiceRef("x", "ns")))
    stored = catalog.checkpoint(spec.model.checkpoint_format, plan.quantization).id
    return build_vllm_args(cfg), stored, spec.model.architecture or "llama-3.1-8b"


def _quantization_cases(tmp: Path) -> list[dict[str, object]]:
    import yaml

    from tests.conftest import minimal_spec

    specs = [
        ("example " + p.name, yaml.safe_load(p.read_text())["spec"])
        for p in sorted((ROOT / "examples").glob("*.yaml"))
    ]
    paths = [("bf16", "none"), ("bf16", "fp8"), ("fp8", "fp8"), ("fbgemm_fp8", "fp8"),
             ("compressed-tensors-fp8", "fp8"), ("compressed-tensors-int8", "int8"),
             ("awq", "awq"), ("gptq", "gptq")]  # fmt: skip
    specs += [
        (
            f"{stored} checkpoint, method {method}",
            minimal_spec(
                model={
                    "source": "hf://org/m",
                    "architecture": "llama-3.1-8b",
                    "checkpointFormat": stored,
                },
                quantization={"method": method},
            ),
        )
        for stored, method in paths
    ]
    cases = []
    for i, (name, doc) in enumerate(specs):
        argv, stored, arch = _rendered_argv(doc)
        config = _llama_config(arch, QUANTIZATION_CONFIGS[stored])
        cases.append({"name": name, "argv": argv, "dir": str(tmp / f"m{i}"), "config": config,
                      "stored": stored})  # fmt: skip
    # What the launcher did before: --quantization from the plan whatever the checkpoint says.
    old = dict(cases[0])
    fbgemm = next(c for c in cases if c["stored"] == "fbgemm_fp8")
    old.update(name="old fbgemm_fp8 with --quantization fp8", config=fbgemm["config"],
               dir=str(tmp / "old"), argv=[*fbgemm["argv"], "--quantization", "fp8"])  # fmt: skip
    return [*cases, old]


@pytest.fixture(scope="module")
def vllm_model_configs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    cases = _quantization_cases(tmp_path_factory.mktemp("checkpoints"))
    checked = subprocess.run(
        [vllm_python(), "-c", MODEL_CONFIG_CHECK], capture_output=True, text=True, timeout=900,
        check=False, input=json.dumps([{k: c[k] for k in ("argv", "dir", "config")}
                                       for c in cases]),
        env={**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr[-4000:]
    results: list[dict[str, object]] = json.loads(checked.stdout)
    return [{**c, **r} for c, r in zip(cases, results, strict=True)]


@pytest.mark.timeout(1200)
def test_vllm_accepts_every_example_and_checkpoint_format(
    vllm_model_configs: list[dict[str, object]],
) -> None:
    refused = [f"{c['name']}: {c['error']}" for c in vllm_model_configs[:-1] if not c["ok"]]
    assert refused == []
    for case in vllm_model_configs[:-1]:
        argv = case["argv"]
        assert isinstance(argv, list)
        method = QUANTIZATION_CONFIGS[str(case["stored"])]
        if method is None:  # unquantized: --quantization only for online fp8
            assert case["quantization"] == (argv[argv.index("--quantization") + 1]
                                            if "--quantization" in argv else None)  # fmt: skip
        else:  # quantized: no flag; vLLM found the checkpoint's own method
            assert "--quantization" not in argv, case["name"]
            assert case["quantization"] is not None


@pytest.mark.timeout(1200)
def test_vllm_refuses_a_quantization_flag_that_contradicts_the_checkpoint(
    vllm_model_configs: list[dict[str, object]],
) -> None:
    old = vllm_model_configs[-1]
    assert not old["ok"]
    assert "(fbgemm_fp8) does not match" in str(old["error"])

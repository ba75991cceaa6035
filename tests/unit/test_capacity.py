from __future__ import annotations

import pytest

from tests.conftest import minimal_spec
from tests.tools import TINY_MODEL_SPEC
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, token_budget
from tokenscale.domain.capacity import Infeasible, Plan
from tokenscale.domain.perf import step_model
from tokenscale_contract import catalog


def plan_of(arch: str, gpu: str, quant: str = "none", **sections: object) -> Plan | Infeasible:
    base: dict[str, object] = {
        "model": {"source": "hf://org/m", "architecture": arch},
        "resources": {"gpu": gpu},
        "quantization": {"method": quant},
    }
    raw = minimal_spec(**{**base, **sections})
    return capacity.plan(InferenceServiceSpec.model_validate(raw))


def test_llama_8b_bf16_fits_one_l4() -> None:
    result = plan_of("llama-3.1-8b", "l4-24gb")
    assert isinstance(result, Plan)
    assert result.gpus_per_replica == 1
    # 8.03 B params x 2 B = 15.0 GiB of weights; the rest of 21.6 GiB usable is KV cache.
    assert result.weights_gib == pytest.approx(15.0, abs=0.1)
    assert 30_000 < result.kv_cache_tokens < 60_000


def test_llama_70b_bf16_h100_needs_tensor_parallel_4() -> None:
    """TP2 leaves ~31k KV tokens, under 16 x 2048: too small a batch; TP4 fits."""
    result = plan_of("llama-3.1-70b", "h100-80gb")
    assert isinstance(result, Plan)
    assert result.tensor_parallel == 4
    assert result.max_concurrency >= 200


def test_llama_70b_awq_fits_one_h100() -> None:
    result = plan_of("llama-3.1-70b", "h100-80gb", "awq")
    assert isinstance(result, Plan)
    assert result.gpus_per_replica == 1
    # An AWQ checkpoint: vLLM reads its quantization_config (and picks Marlin); no flag.
    assert result.quantization == "awq" and result.vllm_quantization is None


def test_llama_405b_bf16_is_infeasible_with_actionable_reason() -> None:
    result = plan_of("llama-3.1-405b", "h100-80gb")
    assert isinstance(result, Infeasible)
    assert "756 GiB" in result.reason
    # Eight H100s hold 8 x 79.65 GiB = 637 GiB usable (nvidia-smi's 81559 MiB each), not 640.
    assert "637 GiB" in result.reason
    assert "fp8" in result.reason and "378 GiB" in result.reason


def test_llama_405b_fp8_fits_eight_h100() -> None:
    result = plan_of("llama-3.1-405b", "h100-80gb", "fp8")
    assert isinstance(result, Plan)
    assert result.tensor_parallel == 8


def test_auto_quantization_picks_fewest_gpus() -> None:
    result = plan_of("llama-3.1-70b", "h100-80gb", "auto")
    assert isinstance(result, Plan)
    assert (result.quantization, result.tensor_parallel) == ("fp8", 2)


def test_auto_prefers_quality_on_a_tie() -> None:
    raw = minimal_spec(quantization={"method": "auto", "allowed": ["awq", "none"]})
    result = capacity.plan(InferenceServiceSpec.model_validate(raw))
    assert isinstance(result, Plan)
    assert (result.quantization, result.tensor_parallel) == ("none", 1)


def test_fixed_gpus_per_replica_is_respected_or_explained() -> None:
    fits = plan_of("llama-3.1-8b", "h100-80gb", resources={"gpu": "h100-80gb", "gpusPerReplica": 2})
    assert isinstance(fits, Plan) and fits.tensor_parallel == 2
    too_small = plan_of(
        "llama-3.1-70b", "l4-24gb", resources={"gpu": "l4-24gb", "gpusPerReplica": 1}
    )
    assert isinstance(too_small, Infeasible)
    assert "1xl4-24gb" in too_small.reason


def test_kv_floor_reason_names_the_fields_to_change() -> None:
    result = plan_of(
        "llama-3.1-8b",
        "l4-24gb",
        model={"source": "hf://o/m", "architecture": "llama-3.1-8b", "maxModelLen": 131072},
        resources={"gpu": "l4-24gb", "gpusPerReplica": 1},
    )
    assert isinstance(result, Infeasible)
    assert "spec.model.maxModelLen" in result.reason


def test_custom_architecture_is_planned() -> None:
    shape = {
        "parametersBillions": 13,
        "layers": 40,
        "hiddenSize": 5120,
        "kvHeads": 40,
        "headDim": 128,
    }
    result = plan_of("x", "a100-80gb", model={"source": "pvc://bucket/m13b", "parameters": shape})
    assert isinstance(result, Plan)
    assert result.model_name == "m13b"


def test_slow_itl_objective_is_noted() -> None:
    result = plan_of("llama-3.1-8b", "l4-24gb", slo={"itlSeconds": 0.02})
    assert isinstance(result, Plan)
    assert any("ITL objective 20 ms" in note for note in result.notes)


@pytest.mark.parametrize("model_id", sorted(catalog.MODELS))
@pytest.mark.parametrize("gpu_id", sorted(catalog.GPUS))
def test_every_catalog_pair_plans_or_explains(model_id: str, gpu_id: str) -> None:
    result = plan_of(
        model_id, gpu_id, quantization={"method": "auto", "allowed": ["none", "fp8", "awq"]}
    )
    if isinstance(result, Plan):
        gpu = catalog.GPUS[gpu_id]
        used = result.weights_gib + result.kv_cache_gib
        assert used <= result.tensor_parallel * gpu.memory_gib * 0.9
        assert result.kv_cache_tokens >= 8192
        assert result.max_concurrency >= 1
    else:
        assert result.reason


def test_weights_kv_arithmetic_matches_worked_numbers() -> None:
    arch = catalog.model("llama-3.1-8b")
    assert arch.kv_bytes_per_token() == 131072
    assert capacity.weights_gib(
        catalog.model("llama-3.1-405b"), catalog.quant("none")
    ) == pytest.approx(756, abs=1)


@pytest.mark.parametrize(
    ("gpu_id", "nvidia_smi_mib"),
    [
        ("h100-80gb", 81559),
        ("h200-141gb", 143771),
        ("a100-80gb", 81920),
        ("a100-40gb", 40960),
        ("l40s-48gb", 46068),
        ("l4-24gb", 23034),
    ],
)
def test_gpu_memory_is_what_nvidia_smi_reports(gpu_id: str, nvidia_smi_mib: int) -> None:
    assert catalog.gpu(gpu_id).memory_gib == pytest.approx(nvidia_smi_mib / 1024, abs=0.01)


def test_an_l4_plan_counts_the_usable_22_5_gib_not_24() -> None:
    # Llama-3.1-8B bf16 on one L4: 22.49 x 0.9 = 20.24 GiB usable - 14.96 GiB weights - 1 GiB
    # reserve - 0.125 GiB activations = 4.2 GiB of KV cache (24 GiB would have given 5.5).
    result = plan_of("llama-3.1-8b", "l4-24gb")
    assert isinstance(result, Plan)
    assert result.kv_cache_gib == pytest.approx(4.2, abs=0.05)


def plan_ckpt(method: str, stored: str, arch: str = "llama-3.1-70b") -> Plan | Infeasible:
    raw = minimal_spec(
        model={"source": "hf://org/m", "architecture": arch, "checkpointFormat": stored},
        resources={"gpu": "h100-80gb"},
        quantization={"method": method},
    )
    return capacity.plan(InferenceServiceSpec.model_validate(raw))


@pytest.mark.parametrize(
    ("method", "stored", "flag", "deprecated"),
    [
        ("none", "bf16", None, False),
        ("fp8", "bf16", "fp8", False),  # online: vLLM quantizes bf16 weights at load
        ("fp8", "fp8", None, False),  # pre-quantized: vLLM reads quantization_config
        ("fp8", "fbgemm_fp8", None, True),
        ("fp8", "compressed-tensors-fp8", None, False),
        ("int8", "compressed-tensors-int8", None, False),
        ("awq", "awq", None, False),
        ("gptq", "auto", None, False),
        ("fp8", "auto", "fp8", False),
    ],
)
def test_quantization_flag_only_for_online_quantization(
    method: str, stored: str, flag: str | None, deprecated: bool
) -> None:
    result = plan_ckpt(method, stored)
    assert isinstance(result, Plan)
    assert result.vllm_quantization == flag
    assert result.allow_deprecated_quantization is deprecated


@pytest.mark.parametrize(
    ("method", "stored", "fragment"),
    [
        ("fp8", "awq", "checkpointFormat awq stores awq weights; spec.quantization.method fp8"),
        ("none", "fbgemm_fp8", "set it to fp8 (or auto)"),
        ("awq", "bf16", "spec.quantization.method awq needs a checkpoint stored that way"),
    ],
)
def test_a_method_the_checkpoint_cannot_run_is_refused(
    method: str, stored: str, fragment: str
) -> None:
    result = plan_ckpt(method, stored)
    assert isinstance(result, Infeasible)
    assert fragment in result.reason


def test_auto_with_a_quantized_checkpoint_plans_its_own_precision() -> None:
    result = plan_ckpt("auto", "fbgemm_fp8", "llama-3.1-405b")
    assert isinstance(result, Plan)
    assert result.quantization == "fp8" and result.vllm_quantization is None


def spec_of(arch: str, gpu: str, quant: str = "none", **resources: object) -> InferenceServiceSpec:
    raw = minimal_spec(
        model={"source": "hf://org/m", "architecture": arch},
        resources={"gpu": gpu, **resources},
        quantization={"method": quant},
    )
    return InferenceServiceSpec.model_validate(raw)


def test_405b_bf16_on_h100_plans_two_nodes_of_eight_when_multi_node_is_allowed() -> None:
    result = capacity.plan(spec_of("llama-3.1-405b", "h100-80gb"), multi_node=True)
    assert isinstance(result, Plan)
    assert (result.nodes, result.tensor_parallel, result.gpus_per_replica) == (2, 8, 16)
    # 16 x 79.65 GiB x 0.9 = 1146.9 usable - 756.0 weights - 16 reserve - 2 x 2 GiB of
    # activations (8192 tokens x 16384 hidden x 16 B per stage) = 370.9 GiB of KV cache
    assert result.kv_cache_gib == pytest.approx(370.9, abs=0.1)
    assert any("LeaderWorkerSet" in n for n in result.notes)
    # the ITL of one sequence pays the two stages' transfers on top of the 8-GPU roofline
    single = step_model(catalog.model("llama-3.1-405b"), catalog.gpu("h100-80gb"),
                        catalog.quant("none"), 8)  # fmt: skip
    assert result.min_itl_seconds > single.decode_itl(1, 1024)


def test_without_multi_node_the_refusal_names_the_nodes_that_would_fit() -> None:
    result = capacity.plan(spec_of("llama-3.1-405b", "h100-80gb"))
    assert isinstance(result, Infeasible)
    assert "needs about 756 GiB" in result.reason
    assert "Across 2 nodes of 8 GPUs per replica" in result.reason
    assert "LeaderWorkerSet" in result.reason


def test_a_model_one_node_holds_is_never_split_across_nodes() -> None:
    for arch, quant in (("llama-3.1-405b", "fp8"), ("llama-3.1-70b", "none")):
        result = capacity.plan(spec_of(arch, "h100-80gb", quant), multi_node=True)
        assert isinstance(result, Plan) and result.nodes == 1


def test_multi_node_needs_whole_nodes() -> None:
    # gpusPerReplica 4 asks for 4 GPUs: no 4-GPU pipeline stage is planned
    result = capacity.plan(
        spec_of("llama-3.1-405b", "h100-80gb", gpusPerReplica=4), multi_node=True
    )
    assert isinstance(result, Infeasible)
    assert "Across" not in result.reason


def test_auto_keeps_the_fewest_gpus_over_a_multi_node_bf16_plan() -> None:
    spec = spec_of("llama-3.1-405b", "h100-80gb", "auto")
    result = capacity.plan(spec, multi_node=True)
    assert isinstance(result, Plan) and (result.quantization, result.nodes) == ("fp8", 1)


def test_the_plan_runs_the_largest_token_budget_the_itl_objective_allows() -> None:
    """70B fp8 on 2 x H100, cap 119, 50 ms: a step with vLLM's default 8192-token chunk takes
    647 ms; 531 tokens beside 119 decoding requests is the largest chunk within 50 ms, and the
    budget the plan renders."""
    result = plan_of("llama-3.1-70b", "h100-80gb", "fp8")
    assert isinstance(result, Plan) and result.max_num_batched_tokens == 531
    assert result.itl_budget_tokens == 531
    assert result.max_num_batched_tokens_source == token_budget.SOURCE_ITL
    arch, gpu, quant = (
        catalog.model("llama-3.1-70b"),
        catalog.gpu("h100-80gb"),
        catalog.quant("fp8"),
    )
    steps = step_model(arch, gpu, quant, result.tensor_parallel)
    context = 1024  # expectedSequenceTokens / 2
    assert steps.mixed_step(531, result.max_concurrency, context) <= 0.05
    assert steps.mixed_step(532, result.max_concurrency, context) > 0.05
    (note,) = [n for n in result.notes if "maxNumBatchedTokens" in n]
    assert "beside 119 decoding requests stays within the 50 ms ITL objective" in note
    assert "vLLM's default 8192 would take 647 ms" in note
    # The user's own budget wins: no note, the ITL figure still computed.
    chosen = plan_of("llama-3.1-70b", "h100-80gb", "fp8", engine={"maxNumBatchedTokens": 4096})
    assert isinstance(chosen, Plan) and chosen.max_num_batched_tokens == 4096
    assert chosen.max_num_batched_tokens_source == token_budget.SOURCE_SPEC
    assert 500 < chosen.itl_budget_tokens < 560
    assert not any("maxNumBatchedTokens" in n for n in chosen.notes)


def test_vllms_default_budget_where_a_full_chunk_of_it_fits_the_objective() -> None:
    # A relaxed ITL objective (1 s) holds a full 8192-token chunk: vLLM's default stays.
    result = plan_of("llama-3.1-70b", "h100-80gb", "fp8", slo={"itlSeconds": 1.0})
    assert isinstance(result, Plan) and result.itl_budget_tokens >= 8192
    assert result.max_num_batched_tokens == 8192
    assert result.max_num_batched_tokens_source == token_budget.SOURCE_DEFAULT
    assert not any("maxNumBatchedTokens" in n for n in result.notes)


def test_a_short_context_does_not_shrink_the_budget() -> None:
    """A model of 512 tokens' context: a full 2048-token step (several prompts' pieces) is far
    within the 200 ms objective, so vLLM's default stays, though no prompt is longer than 512."""
    spec = minimal_spec()
    spec["model"] = TINY_MODEL_SPEC
    spec["resources"] = {"gpu": "l4-24gb"}
    spec["slo"] = {"ttftSeconds": 1.0, "itlSeconds": 0.2}
    result = capacity.plan(InferenceServiceSpec.model_validate(spec))
    assert isinstance(result, Plan) and result.max_num_batched_tokens == 2048
    assert result.itl_budget_tokens >= 2048
    assert result.max_num_batched_tokens_source == token_budget.SOURCE_DEFAULT


def test_without_chunked_prefill_a_step_holds_a_whole_prompt() -> None:
    result = plan_of("llama-3.1-70b", "h100-80gb", "fp8", engine={"enableChunkedPrefill": False})
    assert isinstance(result, Plan) and result.max_num_batched_tokens == 8192  # maxModelLen
    assert result.max_num_batched_tokens_source == token_budget.SOURCE_WHOLE_PROMPT

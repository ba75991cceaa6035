"""A roofline latency model of one vLLM engine step, used to plan batch caps and to seed the
autoscaler's per-replica capacity before observations arrive.

One engine step processes `batch_tokens` new tokens (decodes plus prefill chunks) while reading the
weights once and the KV cache of every running sequence. It is bound by memory bandwidth or by
arithmetic, whichever is slower, plus a fixed launch overhead and, with tensor parallelism, two
all-reduces per layer.

Worked number (Llama-3.1-8B bf16, one H100, 10 sequences at ~1000 tokens of context):
weights 16.1 GB / (3350 GB/s x 0.8) = 6.0 ms; KV 10 x 1000 x 128 KiB = 1.3 GB -> 0.5 ms;
+ 0.8 ms overhead = 7.3 ms per output token, against ~7.6 ms measured with vLLM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenscale_contract.catalog import GpuKind, ModelArch, QuantFormat

# Share of peak bandwidth and of peak tensor throughput that vLLM kernels reach in practice.
BANDWIDTH_EFFICIENCY = 0.8
COMPUTE_EFFICIENCY = 0.55
STEP_OVERHEAD_S = 0.0008
# One all-reduce of a decode batch: ~8 us over NVLink (SXM parts), ~25 us over PCIe.
ALLREDUCE_S_NVLINK = 8e-6
ALLREDUCE_S_PCIE = 25e-6
PCIE_GPUS = frozenset({"l4-24gb", "l40s-48gb"})


@dataclass(frozen=True)
class StepModel:
    """Latency of one engine step for one replica (all its tensor-parallel GPUs together)."""

    weights_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    flops_per_token_per_gpu: float
    bandwidth_bytes_per_s: float
    flops_per_s: float
    fixed_s: float

    def step_seconds(self, batch_tokens: int, context_tokens: int) -> float:
        """One step computing `batch_tokens` tokens over `context_tokens` cached tokens."""
        memory = (
            self.weights_bytes_per_gpu + self.kv_bytes_per_token_per_gpu * context_tokens
        ) / self.bandwidth_bytes_per_s
        compute = self.flops_per_token_per_gpu * batch_tokens / self.flops_per_s
        return self.fixed_s + max(memory, compute)

    def decode_itl(self, batch: int, mean_context: float) -> float:
        """Inter-token latency when `batch` sequences decode together."""
        return self.step_seconds(batch, int(batch * mean_context))

    def largest_batch_within(self, itl_seconds: float, mean_context: float, ceiling: int) -> int:
        """Largest decode batch (<= ceiling) whose ITL stays within `itl_seconds`; 0 if even one
        sequence is too slow. ITL grows monotonically with batch, so bisect."""
        if self.decode_itl(1, mean_context) > itl_seconds:
            return 0
        return largest_where(lambda b: self.decode_itl(b, mean_context) <= itl_seconds, 1, ceiling)


def largest_where(holds: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, max(low, high)] for which `holds` is true, given that it holds at
    `low` and, once false, stays false for every larger n (ITL grows with the batch): bisect."""
    high = max(low, high)
    while low < high:
        mid = (low + high + 1) // 2
        if holds(mid):
            low = mid
        else:
            high = mid - 1
    return low


def step_model(
    arch: ModelArch, gpu: GpuKind, quant: QuantFormat, tensor_parallel: int
) -> StepModel:
    """Build the step model for one replica of `arch` on `tensor_parallel` GPUs of `gpu`."""
    active_weight_bytes = arch.active_params_b * 1e9 * quant.bytes_per_param
    allreduce = ALLREDUCE_S_PCIE if gpu.id in PCIE_GPUS else ALLREDUCE_S_NVLINK
    comm = 2 * arch.layers * allreduce if tensor_parallel > 1 else 0.0
    native_fp8_math = quant.needs_native_fp8 or (quant.id == "fp8" and gpu.native_fp8)
    prefill_speedup = quant.prefill_speedup if native_fp8_math or quant.id != "fp8" else 1.0
    return StepModel(
        weights_bytes_per_gpu=active_weight_bytes / tensor_parallel,
        kv_bytes_per_token_per_gpu=arch.kv_bytes_per_token() / tensor_parallel,
        flops_per_token_per_gpu=2.0 * arch.active_params_b * 1e9 / tensor_parallel,
        bandwidth_bytes_per_s=gpu.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY,
        flops_per_s=gpu.bf16_tflops * 1e12 * COMPUTE_EFFICIENCY * prefill_speedup,
        fixed_s=STEP_OVERHEAD_S + comm,
    )

"""The one roofline of a vLLM engine step: what the planner and the autoscaler believe
(`tokenscale.domain.perf`) and what the simulator runs (`tokenscale_sim.profile`; the benchmark's
drawn world perturbs it). One copy, so the benchmark's "known world" is exactly the planner's
belief and its drawn world a stated departure from it.

One iteration schedules `tokens` tokens over `seqs` sequences, reads the weights once and the KV
cache of every scheduled sequence, and is bound by memory or by arithmetic, whichever is slower:

    t = fixed + per_seq * seqs + max(weights + kv_read * kv_tokens, flops * tokens + attn * pairs)

weights  = time to read one GPU's share of the weights at the achieved bandwidth (bf16 bytes
           divided by the quantization's measured decode speedup, which stands for fewer bytes and
           the kernel's efficiency together)
kv_read  = time to read one token's K and V (all layers, one GPU's share)
flops    = dense GEMM time per scheduled token (2 x active params, at the prefill speedup)
attn     = attention time per (query token, context token) pair (4 x layers x heads x head_dim)
fixed    = launch and scheduler overhead, plus two all-reduces per layer under tensor parallelism

Worked number, Llama-3.1-8B bf16 on one H100 with 10 sequences of ~1000 tokens context:
bytes = 16.06 GB + 10 x 1000 x 128 KiB = 17.37 GB; 17.37 GB / (3350 GB/s x 0.78) = 6.65 ms;
flops = 2 x 8.03e9 x 10 = 0.16 TFLOP -> 0.3 ms, so memory bound; + 0.8 ms + 10 x 8 us = 7.5 ms
per output token, against ~7.6 ms measured (docs/simulator.md cites the sources).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale_contract.catalog import GpuKind, ModelArch, QuantFormat

# Fraction of peak memory bandwidth a decode step achieves. A single-stream Llama-3.1-8B decode on
# an A100 reaches ~77% of the bandwidth roofline (docs/simulator.md, source 3).
BW_EFF = 0.78
# Fraction of dense bf16 peak that prefill reaches (model FLOPs utilisation of large GEMMs).
MFU = 0.55
# Fixed cost of one engine iteration (scheduler, sampler, kernel launches with CUDA graphs).
STEP_OVERHEAD_S = 0.0008
# Per-sequence CPU cost in the scheduler and detokeniser, which dominates only at large batches.
PER_SEQ_S = 8e-6
# One all-reduce of a decode batch: ~6 us over NVLink (SXM parts), ~25 us over PCIe (L4, L40S
# have no NVLink), two per layer.
ALLREDUCE_S_NVLINK = 6e-6
ALLREDUCE_S_PCIE = 25e-6
PCIE_GPUS = frozenset({"l4-24gb", "l40s-48gb"})
# A replica across nodes runs pipeline parallel: each stage boundary sends the batch's hidden
# states (bf16) over the node interconnect, every tensor-parallel rank its slice on its own NIC
# (`GpuKind.internode_gbs`), and pays one RDMA send/receive latency (~10 us with GPUDirect RDMA
# on InfiniBand; NCCL's point-to-point is of that order) per boundary, the sampled tokens' way
# back to the first stage included.
INTERNODE_LATENCY_S = 10e-6
ACTIVATION_BYTES = 2


@dataclass(frozen=True)
class Roofline:
    """Step-time coefficients of one replica (all its tensor-parallel GPUs), in seconds."""

    fixed_s: float
    per_seq_s: float
    weight_s: float
    kv_read_s_per_token: float
    flop_s_per_token: float
    attn_s_per_pair: float
    # Pipeline parallel across nodes: hidden states sent between stages, per scheduled token.
    transfer_s_per_token: float = 0.0

    def step_seconds(self, tokens: int, seqs: int, kv_read: float, attn_pairs: float) -> float:
        """One iteration: `tokens` over `seqs` sequences, reading `kv_read` context tokens' KV
        and computing `attn_pairs` (query, context) pairs."""
        memory = self.weight_s + kv_read * self.kv_read_s_per_token
        compute = tokens * self.flop_s_per_token + attn_pairs * self.attn_s_per_pair
        transfer = tokens * self.transfer_s_per_token
        return self.fixed_s + seqs * self.per_seq_s + transfer + max(memory, compute)

    def decode_step(self, batch: int, context: float) -> float:
        """A pure decode step of `batch` sequences with `context` tokens each: the ITL."""
        return self.step_seconds(batch, batch, batch * context, batch * context)

    def prefill_step(self, prompt: int) -> float:
        """One step that prefills a whole prompt of `prompt` tokens onto an empty cache."""
        return self.step_seconds(prompt, 1, prompt, prompt * (prompt + 1) / 2)


def prefill_speedup(quant: QuantFormat, gpu: GpuKind) -> float:
    """Prefill speed relative to bf16. Without fp8 tensor cores (Ampere) vLLM runs fp8 checkpoints
    as weight-only Marlin kernels, which dequantise like AWQ: no prefill gain, slightly slower."""
    if quant.id == "fp8" and not gpu.native_fp8:
        return 0.9
    return quant.prefill_speedup


def roofline(
    arch: ModelArch, gpu: GpuKind, quant: QuantFormat, tensor_parallel: int, nodes: int = 1
) -> Roofline:
    """The coefficients for one replica of `arch` on `tensor_parallel` GPUs of `gpu` in each of
    `nodes` pipeline stages.

    A token traverses the stages one after the other, each reading its share of the layers at
    its `tensor_parallel` GPUs' bandwidth, so the memory and arithmetic terms are those of the
    whole model on `tensor_parallel` GPUs; the stage boundaries add their transfers. Worked
    number (Llama-3.1-405B bf16, 2 nodes x 8 H100): 32 KiB of hidden state per token over 8 x
    50 GB/s is 82 ns per token, 10 us for a decode batch of 128, against a ~45 ms step.
    vLLM keeps one batch in flight per stage, so the stages work on different batches at once
    and a token's step is this traversal (the planner's cap counts one batch per stage); with
    fewer batches ready than stages, stages idle (the pipeline bubble) and throughput, not
    latency, drops."""
    tp = tensor_parallel
    bandwidth = gpu.bandwidth_gbs * 1e9 * BW_EFF * tp
    flops = gpu.bf16_tflops * 1e12 * MFU * tp * prefill_speedup(quant, gpu)
    allreduce = ALLREDUCE_S_PCIE if gpu.id in PCIE_GPUS else ALLREDUCE_S_NVLINK
    bf16_weight_bytes = arch.active_params_b * 1e9 * 2.0
    boundaries = nodes - 1
    link = gpu.internode_gbs * 1e9 * tp / gpu.gpus_per_node  # the NICs of the stage's ranks
    transfer = boundaries * arch.hidden_size * ACTIVATION_BYTES / link if boundaries else 0.0
    return Roofline(
        fixed_s=STEP_OVERHEAD_S
        + (2 * arch.layers * allreduce if tp > 1 else 0.0)
        + (nodes * INTERNODE_LATENCY_S if boundaries else 0.0),
        transfer_s_per_token=transfer,
        per_seq_s=PER_SEQ_S,
        weight_s=bf16_weight_bytes / quant.decode_speedup / bandwidth,
        kv_read_s_per_token=arch.kv_bytes_per_token() / bandwidth,
        flop_s_per_token=2.0 * arch.active_params_b * 1e9 / flops,
        attn_s_per_pair=4.0 * arch.layers * arch.attention_heads * arch.head_dim / flops,
    )

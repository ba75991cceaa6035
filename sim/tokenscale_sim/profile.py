"""Engine profiles: how long one vLLM iteration takes and how many KV-cache tokens fit.

A profile is the roofline of `tokenscale_contract.roofline` (the same coefficients the planner
uses) for one model, GPU, quantization and tensor-parallel size, plus the engine's limits and the
KV-cache room left beside the weights. The step time is

    t = fixed + per_seq * seqs + max(weights + kv_read * kv_tokens, flops * tokens + attn * pairs)

(the contract module gives each term, its constants and a worked number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tokenscale_contract import catalog
from tokenscale_contract.roofline import roofline

# Memory vLLM keeps per GPU outside weights and KV cache (activations, CUDA graphs, NCCL buffers).
RESERVED_GIB = 2.0
# vLLM's default KV-cache block size in tokens.
BLOCK_SIZE = 16


class InfeasibleProfileError(ValueError):
    """The model does not fit the GPUs as asked; the message says why and what would fit."""


@dataclass(frozen=True)
class EngineProfile:
    """Everything the engine model needs to time a step; built by `build_profile`."""

    name: str
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    kv_capacity_tokens: int
    enable_chunked_prefill: bool
    block_size: int
    # Step-time coefficients (seconds), see the module docstring.
    fixed_s: float  # overhead + tensor-parallel communication
    per_seq_s: float
    weight_s: float  # time to read the weights once at the achieved bandwidth
    kv_read_s_per_token: float  # time to read one token's K and V (all layers, one GPU's share)
    flop_s_per_token: float  # dense GEMM time per scheduled token
    attn_s_per_pair: float  # attention time per (query token, context token) pair
    # Multiplies every step time; < 1 makes a wall-clock simulator run faster than a real GPU.
    time_scale: float = 1.0
    # Pipeline parallel across nodes: hidden states sent between stages, per scheduled token.
    transfer_s_per_token: float = 0.0

    def step_seconds(self, tokens: int, seqs: int, kv_read: float, attn_pairs: float) -> float:
        """Duration of one iteration that schedules `tokens` tokens over `seqs` sequences.

        `kv_read` is the number of context tokens whose KV the attention reads (summed over the
        sequences), `attn_pairs` the number of (query, context) pairs attention computes.
        """
        memory = self.weight_s + kv_read * self.kv_read_s_per_token
        compute = tokens * self.flop_s_per_token + attn_pairs * self.attn_s_per_pair
        base = self.fixed_s + seqs * self.per_seq_s + tokens * self.transfer_s_per_token
        return (base + max(memory, compute)) * self.time_scale

    @property
    def kv_capacity_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size


def build_profile(
    model_id: str,
    gpu_id: str,
    quant_id: str = "none",
    *,
    tensor_parallel_size: int = 1,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    enable_chunked_prefill: bool = True,
    time_scale: float = 1.0,
    nodes: int = 1,
) -> EngineProfile:
    """Derive a profile from the catalog; raise `InfeasibleProfileError` when the model cannot run.

    KV capacity, Llama-3.1-8B bf16 on one H100 at 0.9 utilisation:
    79.65 x 0.9 = 71.69 GiB - 14.96 GiB weights - 2 GiB reserved = 54.73 GiB / 128 KiB = 448 331
    tokens (79.65 GiB: nvidia-smi's usable 81559 MiB, catalog.GPUS).
    """
    m, g, q = catalog.model(model_id), catalog.gpu(gpu_id), catalog.quant(quant_id)
    tp = tensor_parallel_size
    max_len = max_model_len or m.max_context
    weight_bytes = m.params_b * 1e9 * q.bytes_per_param
    usable = (g.memory_gib * gpu_memory_utilization - RESERVED_GIB) * catalog.GIB * tp * nodes
    kv_room = usable - weight_bytes
    name = f"{m.id}/{g.id}/{q.id}/tp{tp}" + (f"xpp{nodes}" if nodes > 1 else "")
    if kv_room <= 0:
        raise InfeasibleProfileError(
            f"{name}: weights need {weight_bytes / catalog.GIB:.1f} GiB but {tp} x {g.id} leave "
            f"{usable / catalog.GIB:.1f} GiB; use a larger tensor-parallel size or a 4-bit format"
        )
    kv_tokens = int(kv_room // m.kv_bytes_per_token())
    if kv_tokens < max_len:
        raise InfeasibleProfileError(
            f"{name}: KV cache holds {kv_tokens} tokens, fewer than max_model_len {max_len}; "
            f"lower max_model_len to at most {kv_tokens} or add GPUs"
        )
    if not enable_chunked_prefill and max_num_batched_tokens < max_len:
        raise InfeasibleProfileError(
            f"{name}: without chunked prefill max_num_batched_tokens ({max_num_batched_tokens}) "
            f"must be at least max_model_len ({max_len})"
        )
    r = roofline(m, g, q, tp, nodes)
    return EngineProfile(
        name=name,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_len,
        kv_capacity_tokens=kv_tokens,
        enable_chunked_prefill=enable_chunked_prefill,
        block_size=BLOCK_SIZE,
        fixed_s=r.fixed_s,
        per_seq_s=r.per_seq_s,
        weight_s=r.weight_s,
        kv_read_s_per_token=r.kv_read_s_per_token,
        flop_s_per_token=r.flop_s_per_token,
        attn_s_per_pair=r.attn_s_per_pair,
        time_scale=time_scale,
        transfer_s_per_token=r.transfer_s_per_token,
    )


def smallest_feasible_tp(model_id: str, gpu_id: str, quant_id: str = "none", **kw: int) -> int:
    """The smallest tensor-parallel size from the catalog's list that runs the model."""
    for tp in catalog.TENSOR_PARALLEL_SIZES:
        try:
            build_profile(model_id, gpu_id, quant_id, tensor_parallel_size=tp, **kw)  # type: ignore[arg-type]
        except InfeasibleProfileError:
            continue
        return tp
    raise InfeasibleProfileError(f"{model_id} with {quant_id} does not fit 8 x {gpu_id}")


def blocks_for(tokens: int, block_size: int = BLOCK_SIZE) -> int:
    """KV blocks a sequence of `tokens` tokens occupies: 1000 tokens -> 63 blocks of 16."""
    return math.ceil(tokens / block_size)


def perturbed(profile: EngineProfile, decode_speed: float, prefill_speed: float) -> EngineProfile:
    """The same engine on hardware `decode_speed` times as fast at reading memory (weights and
    KV cache) and `prefill_speed` times as fast at compute: the benchmark's drawn world, where
    the planner's roofline is the belief and this is the truth. 0.8 / 1.1: decode steps take
    1.25x as long, prefill 0.91x."""
    if decode_speed <= 0 or prefill_speed <= 0:
        raise ValueError(
            f"decode_speed {decode_speed} and prefill_speed {prefill_speed} must be > 0"
        )
    return replace(
        profile,
        name=f"{profile.name} (decode x{decode_speed:.2f}, prefill x{prefill_speed:.2f})",
        weight_s=profile.weight_s / decode_speed,
        kv_read_s_per_token=profile.kv_read_s_per_token / decode_speed,
        flop_s_per_token=profile.flop_s_per_token / prefill_speed,
        attn_s_per_pair=profile.attn_s_per_pair / prefill_speed,
    )

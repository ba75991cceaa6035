"""Facts the planner, the simulator and the benchmark share: GPU kinds, model architectures and
quantization formats.

Figures come from vendor data sheets and the models' published `config.json` files. Memory is the
usable total `nvidia-smi` reports (and torch.cuda.mem_get_info, which vLLM's
`--gpu-memory-utilization` is applied to), not the marketing figure: an "L4 24GB" has 22.5 GiB,
so planning with 24 would promise a KV cache about 25% larger than vLLM finds.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuKind:
    """One GPU model as the planner and simulator see it."""

    id: str
    display: str
    memory_gib: float
    # HBM/GDDR bandwidth in GB/s: decode steps are bound by reading weights and KV cache.
    bandwidth_gbs: float
    # Dense bf16 tensor throughput in TFLOP/s: prefill is bound by arithmetic.
    bf16_tflops: float
    # Native fp8 tensor cores (Hopper, Ada); Ampere runs fp8 as weight-only (Marlin) kernels.
    native_fp8: bool
    # On-demand list price per GPU-hour in USD, used only to show cost next to GPU-hours.
    usd_per_hour: float
    # GPUs one node holds, which bounds tensor parallelism within a node.
    gpus_per_node: int
    # The node's network to other nodes in GB/s, all its NICs together, for pipeline parallel
    # across nodes. DGX H100/H200: 8 ConnectX-7 at 400 Gb/s (one per GPU) = 400 GB/s; DGX A100:
    # 8 ConnectX-6 at 200 Gb/s = 200 GB/s (NVIDIA DGX user guides, hardware overview). L40S and
    # L4 servers (PCIe cards, no GPU-attached fabric): 2 x 100 GbE = 25 GB/s.
    internode_gbs: float


@dataclass(frozen=True)
class ModelArch:
    """A transformer's shape: what weights and KV cache cost."""

    id: str
    display: str
    hf_repo: str
    params_b: float  # total parameters, billions
    active_params_b: float  # parameters read per token (differs for mixture-of-experts)
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    max_context: int

    def kv_bytes_per_token(self, kv_bytes_per_value: float = 2.0) -> float:
        """K and V for every layer: 2 x layers x kv_heads x head_dim x bytes.

        Llama-3.1-8B: 2 x 32 x 8 x 128 x 2 B = 131072 B = 128 KiB per token.
        """
        return 2.0 * self.layers * self.kv_heads * self.head_dim * kv_bytes_per_value


@dataclass(frozen=True)
class QuantFormat:
    """How a quantization method stores weights and how fast kernels run with it."""

    id: str
    bytes_per_param: float
    # vLLM's --quantization value; None means the checkpoint's own dtype.
    vllm_name: str | None
    # Decode speed relative to bf16 on the same GPU (less weight to read per step), from vLLM's
    # published quantization benchmarks: fp8 ~1.6x, AWQ/GPTQ Marlin ~1.6-1.9x at small batch.
    decode_speedup: float
    # Prefill speed relative to bf16 (fp8 tensor cores double the math; weight-only formats
    # dequantize and are slightly slower than bf16 on prefill).
    prefill_speedup: float
    needs_native_fp8: bool = False


def _mib(total_mib: int) -> float:
    """nvidia-smi's memory total (MiB) in GiB: 23034 MiB -> 22.49 GiB."""
    return round(total_mib / 1024, 2)


# Usable memory: the "Memory-Usage" total nvidia-smi prints for each part (NVML's
# nvmlDeviceGetMemoryInfo total, also GFD's nvidia.com/gpu.memory label), e.g. "0MiB / 81559MiB":
#   H100 80GB HBM3 (SXM5)  81559 MiB = 79.65 GiB    H200 (SXM)        143771 MiB = 140.4 GiB
#   A100-SXM4-80GB         81920 MiB = 80.0 GiB     A100-SXM4-40GB     40960 MiB = 40.0 GiB
#   L40S                   46068 MiB = 44.99 GiB    L4                 23034 MiB = 22.49 GiB
# (nvidia-smi output on these parts, as published in vendor and user guides; ECC on).
GPUS: dict[str, GpuKind] = {
    g.id: g
    for g in (
        GpuKind("h100-80gb", "NVIDIA H100 80GB SXM", _mib(81559), 3350, 989, True, 4.00, 8, 400),
        GpuKind("h200-141gb", "NVIDIA H200 141GB SXM", _mib(143771), 4800, 989, True, 5.00, 8, 400),
        GpuKind("a100-80gb", "NVIDIA A100 80GB SXM", _mib(81920), 2039, 312, False, 2.50, 8, 200),
        GpuKind("a100-40gb", "NVIDIA A100 40GB SXM", _mib(40960), 1555, 312, False, 1.80, 8, 200),
        GpuKind("l40s-48gb", "NVIDIA L40S 48GB", _mib(46068), 864, 362, True, 1.60, 8, 25),
        GpuKind("l4-24gb", "NVIDIA L4 24GB", _mib(23034), 300, 121, True, 0.80, 8, 25),
    )
}

MODELS: dict[str, ModelArch] = {
    m.id: m
    for m in (
        ModelArch(
            "llama-3.1-8b",
            "Llama-3.1-8B",
            "meta-llama/Llama-3.1-8B-Instruct",
            8.03,
            8.03,
            32,
            4096,
            32,
            8,
            128,
            131072,
        ),
        ModelArch(
            "llama-3.1-70b",
            "Llama-3.1-70B",
            "meta-llama/Llama-3.1-70B-Instruct",
            70.6,
            70.6,
            80,
            8192,
            64,
            8,
            128,
            131072,
        ),
        ModelArch(
            "llama-3.1-405b",
            "Llama-3.1-405B",
            "meta-llama/Llama-3.1-405B-Instruct",
            405.9,
            405.9,
            126,
            16384,
            128,
            8,
            128,
            131072,
        ),
        ModelArch(
            "qwen2.5-7b",
            "Qwen2.5-7B",
            "Qwen/Qwen2.5-7B-Instruct",
            7.62,
            7.62,
            28,
            3584,
            28,
            4,
            128,
            32768,
        ),
        ModelArch(
            "qwen2.5-72b",
            "Qwen2.5-72B",
            "Qwen/Qwen2.5-72B-Instruct",
            72.7,
            72.7,
            80,
            8192,
            64,
            8,
            128,
            32768,
        ),
        ModelArch(
            "mistral-7b",
            "Mistral-7B",
            "mistralai/Mistral-7B-Instruct-v0.3",
            7.25,
            7.25,
            32,
            4096,
            32,
            8,
            128,
            32768,
        ),
        ModelArch(
            "mixtral-8x7b",
            "Mixtral-8x7B",
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            46.7,
            12.9,
            32,
            4096,
            32,
            8,
            128,
            32768,
        ),
    )
}

QUANTS: dict[str, QuantFormat] = {
    q.id: q
    for q in (
        QuantFormat("none", 2.0, None, 1.0, 1.0),
        QuantFormat("fp8", 1.0, "fp8", 1.6, 1.8),
        QuantFormat("int8", 1.0, "compressed-tensors", 1.4, 0.95),
        QuantFormat("awq", 0.5625, "awq", 1.8, 0.9),
        QuantFormat("gptq", 0.5625, "gptq", 1.8, 0.9),
    )
}
"""4-bit formats store 4 bits per weight plus a group-128 fp16 scale and zero: 0.5625 B/param."""


@dataclass(frozen=True)
class CheckpointFormat:
    """How a checkpoint stores its weights, as its config.json's `quantization_config` says.

    vLLM reads that config itself and picks the fastest kernel (awq -> awq_marlin on a GPU); an
    explicit `--quantization` that differs from it is an error ("quantization method specified in
    the model config (fbgemm_fp8) does not match ... (fp8)"), and forcing `awq` disables Marlin.
    So tokenscale passes --quantization only for online quantization of an unquantized checkpoint.
    """

    id: str
    # The catalog quantization whose memory and speed the weights have (QUANTS key).
    precision: str
    # `quantization_config.quant_method` in config.json; None for an unquantized checkpoint.
    quant_method: str | None
    # vLLM 0.32 refuses deprecated methods unless --allow-deprecated-quantization is given.
    deprecated: bool = False
    example: str = ""


CHECKPOINT_FORMATS: dict[str, CheckpointFormat] = {
    c.id: c
    for c in (
        CheckpointFormat("bf16", "none", None, example="meta-llama/Llama-3.1-70B-Instruct"),
        CheckpointFormat("fp8", "fp8", "fp8", example="Qwen/Qwen2.5-72B-Instruct-FP8"),
        CheckpointFormat(
            "fbgemm_fp8", "fp8", "fbgemm_fp8", True, "meta-llama/Llama-3.1-405B-Instruct-FP8"
        ),
        CheckpointFormat(
            "compressed-tensors-fp8",
            "fp8",
            "compressed-tensors",
            example="RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8",
        ),
        CheckpointFormat(
            "compressed-tensors-int8",
            "int8",
            "compressed-tensors",
            example="RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w8a8",
        ),
        CheckpointFormat(
            "awq", "awq", "awq", example="hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"
        ),
        CheckpointFormat(
            "gptq", "gptq", "gptq", example="hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4"
        ),
    )
}
# What vLLM can quantize on the fly from unquantized (bf16/fp16) weights, by catalog method.
ONLINE_QUANTIZATION: dict[str, str] = {"fp8": "fp8"}
# checkpointFormat `auto`: the checkpoint a method implies (fp8 -> bf16 weights quantized on the
# fly; awq, gptq, int8 -> a checkpoint quantized that way).
IMPLIED_FORMAT: dict[str, str] = {
    "none": "bf16",
    "fp8": "bf16",
    "int8": "compressed-tensors-int8",
    "awq": "awq",
    "gptq": "gptq",
}


def checkpoint(format_id: str, method: str = "none") -> CheckpointFormat:
    """Look up a checkpoint format (`auto`: the one `method` implies), naming the known ones
    when the id is wrong."""
    if format_id == "auto":
        format_id = IMPLIED_FORMAT[method]
    try:
        return CHECKPOINT_FORMATS[format_id]
    except KeyError:
        known = ", ".join(sorted(CHECKPOINT_FORMATS))
        raise KeyError(f"unknown checkpoint format {format_id!r}; known: {known}") from None


def quantization_problem(method: str, format_id: str) -> str | None:
    """Why weights stored as `format_id` cannot run as catalog method `method`, or None."""
    stored = checkpoint(format_id, method)
    if stored.quant_method is None:
        if method == "none" or method in ONLINE_QUANTIZATION:
            return None
        return (
            f"spec.quantization.method {method} needs a checkpoint stored that way (vLLM "
            f"quantizes only to {', '.join(sorted(ONLINE_QUANTIZATION))} on the fly); point "
            f"spec.model.source at a {method} checkpoint and set spec.model.checkpointFormat, "
            "or choose method none or fp8"
        )
    if method != stored.precision:
        return (
            f"spec.model.checkpointFormat {stored.id} stores {stored.precision} weights; "
            f"spec.quantization.method {method} does not match: set it to {stored.precision} "
            "(or auto)"
        )
    return None


def vllm_quantization_flag(method: str, format_id: str) -> str | None:
    """vLLM's --quantization value: only for online quantization of unquantized weights; a
    quantized checkpoint's own quantization_config is left for vLLM to read."""
    if checkpoint(format_id, method).quant_method is not None:
        return None
    return ONLINE_QUANTIZATION.get(method)


# The order `quantization: auto` prefers on a tie in GPU count: keep quality first.
QUALITY_ORDER: tuple[str, ...] = ("none", "fp8", "int8", "awq", "gptq")

TENSOR_PARALLEL_SIZES: tuple[int, ...] = (1, 2, 4, 8)

# The `nvidia.com/gpu.product` values GPU Feature Discovery writes for each kind: NVML's device
# name with spaces replaced by '-' ("NVIDIA H100 80GB HBM3" -> NVIDIA-H100-80GB-HBM3). PCIe parts
# are deliberately absent from the SXM kinds: an H100 PCIe (NVIDIA-H100-PCIe) reads memory at
# 2.0 TB/s against the SXM's 3.35, an A100 80GB PCIe (NVIDIA-A100-80GB-PCIe) at 1.9 against 2.0,
# so the planner's figures would be wrong on them; a cluster that wants them anyway lists them in
# the chart's gpuNodes.values.
GFD_PRODUCTS: dict[str, tuple[str, ...]] = {
    "h100-80gb": ("NVIDIA-H100-80GB-HBM3",),
    "h200-141gb": ("NVIDIA-H200",),
    "a100-80gb": ("NVIDIA-A100-SXM4-80GB",),
    "a100-40gb": ("NVIDIA-A100-SXM4-40GB",),
    "l40s-48gb": ("NVIDIA-L40S",),
    "l4-24gb": ("NVIDIA-L4",),
}


def gpu(gpu_id: str) -> GpuKind:
    """Look up a GPU kind, naming the known ones when the id is wrong."""
    try:
        return GPUS[gpu_id]
    except KeyError:
        known = ", ".join(sorted(GPUS))
        raise KeyError(f"unknown GPU kind {gpu_id!r}; known kinds: {known}") from None


def model(model_id: str) -> ModelArch:
    """Look up a catalog model, naming the known ones when the id is wrong."""
    try:
        return MODELS[model_id]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"unknown model architecture {model_id!r}; known: {known}") from None


def quant(quant_id: str) -> QuantFormat:
    """Look up a quantization format, naming the known ones when the id is wrong."""
    try:
        return QUANTS[quant_id]
    except KeyError:
        known = ", ".join(sorted(QUANTS))
        raise KeyError(f"unknown quantization {quant_id!r}; known: {known}") from None

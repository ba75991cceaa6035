"""Capacity planning: how many GPUs a replica needs, with which quantization, and how large a
batch its KV cache holds.

Per GPU count (1, 2, 4, 8 within a node) the memory budget is

    usable = tp x GPU memory x gpuMemoryUtilization
    kv     = usable - weights - reserve        reserve = 1 GiB per GPU + prefill activations

and a tensor-parallel size fits when the KV cache holds one full `maxModelLen` sequence (vLLM's
own start-up check) and a batch of `scaling.batch.minConcurrency` typical requests of
`engine.expectedSequenceTokens` each. The smallest size that fits wins.

Worked number (Llama-3.1-70B bf16 on h100-80gb, defaults): weights 131.5 GiB. TP2: 144 GiB usable
leaves 9.5 GiB = 31k tokens, fewer than 16 x 2048 = 32.8k -> too small a batch. TP4: 288 GiB
usable leaves ~150 GiB = 490k tokens -> fits, 239 concurrent requests of 2048 tokens.

When no single node fits and the caller allows it (`multi_node`), a replica spans 2 to
`MAX_NODES_PER_REPLICA` whole nodes: tensor parallel across a node's GPUs, pipeline parallel
across the nodes (vLLM's `--pipeline-parallel-size`), the fewest nodes that fit. Memory adds up
over the nodes; every stage holds its own prefill activations. Llama-3.1-405B bf16 on
h100-80gb: 756 GiB of weights; one node of 8 gives 573 GiB usable, two give 1147 GiB, leaving
~350 GiB of KV cache (~1.1M tokens). The cap counts one batch in flight per stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import token_budget
from tokenscale.domain.perf import step_model
from tokenscale_contract import catalog
from tokenscale_contract.catalog import GIB, GpuKind, ModelArch, QuantFormat

RESERVE_GIB_PER_GPU = 1.0
# Peak prefill activations: roughly 16 bytes per hidden unit per batched token (attention and MLP
# intermediates in bf16), split across tensor-parallel ranks.
ACTIVATION_BYTES_PER_HIDDEN_TOKEN = 16
DEFAULT_AUTO_ALLOWED: tuple[str, ...] = ("none", "fp8")
DEFAULT_MAX_NUM_SEQS = 256
# Pipeline stages of one replica at most: 4 nodes of 8 GPUs hold 2.5 TB of H100 memory, more than
# any catalog model needs at bf16; longer pipelines mostly add bubbles.
MAX_NODES_PER_REPLICA = 4


@dataclass(frozen=True)
class Plan:
    """A feasible capacity plan for one replica."""

    model_name: str
    gpu: str
    quantization: str
    vllm_quantization: str | None
    tensor_parallel: int
    weights_gib: float
    kv_cache_gib: float
    kv_cache_tokens: int
    max_concurrency: int
    max_num_seqs: int
    max_num_batched_tokens: int
    min_itl_seconds: float
    notes: tuple[str, ...] = ()
    # The checkpoint's quantization method is one vLLM 0.32 deprecated (fbgemm_fp8).
    allow_deprecated_quantization: bool = False
    # Nodes per replica: > 1 is pipeline parallel across nodes, `tensor_parallel` GPUs on each.
    nodes: int = 1
    # The per-step token budget the ITL objective allows beside a full cap of decoding
    # requests (`StepModel.largest_chunk_within`); 0 when the decode step alone exceeds it.
    itl_budget_tokens: int = 0
    # Which rule chose max_num_batched_tokens (token_budget.SOURCE_*).
    max_num_batched_tokens_source: str = token_budget.SOURCE_DEFAULT

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel * self.nodes

    @property
    def pipeline_parallel(self) -> int:
        return self.nodes

    @property
    def feasible(self) -> bool:
        return True


@dataclass(frozen=True)
class Infeasible:
    """Why no plan fits, in words a person can act on."""

    reason: str
    model_name: str = ""
    gpu: str = ""

    @property
    def feasible(self) -> bool:
        return False


def resolve_arch(spec: InferenceServiceSpec) -> ModelArch:
    """The catalog architecture, or one built from explicit parameters."""
    if spec.model.architecture:
        return catalog.model(spec.model.architecture)
    shape = spec.model.parameters
    if shape is None:  # the CRD's CEL rule makes this unreachable from the API server
        raise ValueError("set spec.model.architecture or spec.model.parameters")
    heads = max(1, shape.hidden_size // shape.head_dim)
    return ModelArch(
        id="custom",
        display=spec.model.source.rsplit("/", 1)[-1],
        hf_repo=spec.model.source,
        params_b=shape.parameters_billions,
        active_params_b=shape.active_parameters_billions or shape.parameters_billions,
        layers=shape.layers,
        hidden_size=shape.hidden_size,
        attention_heads=heads,
        kv_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_context=spec.model.max_model_len,
    )


def weights_gib(arch: ModelArch, quant: QuantFormat) -> float:
    """Weight memory: 405.9 B params x 2 B (bf16) = 756 GiB; x 1 B (fp8) = 378 GiB."""
    return arch.params_b * 1e9 * quant.bytes_per_param / GIB


def _activation_tokens(spec: InferenceServiceSpec, gpu: GpuKind) -> int:
    """The tokens one step's activations are reserved for. The budget the plan then chooses is
    never larger (token_budget: the ITL budget is below vLLM's default), so reserving for the
    default only errs towards a smaller KV cache, and the KV cache, the cap and the budget
    derived from the cap are computed in that order, without a cycle."""
    if spec.engine.max_num_batched_tokens:
        return spec.engine.max_num_batched_tokens
    if not spec.engine.enable_chunked_prefill:
        return spec.model.max_model_len
    return token_budget.vllm_default(gpu.memory_gib)


def _kv_gib(
    spec: InferenceServiceSpec,
    arch: ModelArch,
    gpu: GpuKind,
    quant: QuantFormat,
    tp: int,
    nodes: int = 1,
) -> float:
    gpus = tp * nodes
    usable = gpus * gpu.memory_gib * spec.engine.gpu_memory_utilization
    activations = (
        _activation_tokens(spec, gpu) * arch.hidden_size * ACTIVATION_BYTES_PER_HIDDEN_TOKEN / GIB
    ) * nodes  # every pipeline stage runs its own batch
    return usable - weights_gib(arch, quant) - RESERVE_GIB_PER_GPU * gpus - activations


def _required_kv_tokens(spec: InferenceServiceSpec) -> int:
    floor = spec.scaling.batch.min_concurrency * spec.engine.expected_sequence_tokens
    return max(spec.model.max_model_len, floor)


def _tp_candidates(spec: InferenceServiceSpec, gpu: GpuKind) -> list[int]:
    fixed = spec.resources.gpus_per_replica
    if isinstance(fixed, int):
        return [fixed]
    return [tp for tp in catalog.TENSOR_PARALLEL_SIZES if tp <= gpu.gpus_per_node]


def plan_for_quant(
    spec: InferenceServiceSpec, quant_id: str, multi_node: bool = False
) -> Plan | Infeasible:
    """The smallest tensor-parallel plan for one quantization method; with `multi_node`, when
    no single node fits, the fewest whole nodes that do."""
    arch, gpu, quant = resolve_arch(spec), catalog.gpu(spec.resources.gpu), catalog.quant(quant_id)
    needed = _required_kv_tokens(spec)
    for tp in _tp_candidates(spec, gpu):
        if arch.attention_heads % tp:
            continue  # vLLM splits attention heads evenly across tensor-parallel ranks
        kv_gib = _kv_gib(spec, arch, gpu, quant, tp)
        kv_tokens = int(kv_gib * GIB / arch.kv_bytes_per_token()) if kv_gib > 0 else 0
        if kv_tokens >= needed:
            return _plan(spec, arch, gpu, quant, tp, kv_gib, kv_tokens)
    across = _multi_node(spec, arch, gpu, quant, needed)
    if across is not None and multi_node:
        return across
    reason = _why_not(spec, arch, gpu, quant, needed)
    if across is not None:
        reason += (
            f". Across {across.nodes} nodes of {across.tensor_parallel} GPUs per replica "
            "(pipeline parallel) it would fit, as a LeaderWorkerSet group; install "
            "LeaderWorkerSet (sigs.k8s.io/lws, v0.7 or later: its CRD "
            "leaderworkersets.leaderworkerset.x-k8s.io) and tokenscale plans it"
        )
    return Infeasible(reason, arch.display, gpu.id)


def _multi_node(
    spec: InferenceServiceSpec, arch: ModelArch, gpu: GpuKind, quant: QuantFormat, needed: int
) -> Plan | None:
    """The fewest whole nodes (2 or more) that hold the model and its KV cache, or None."""
    tp = gpu.gpus_per_node
    fixed = spec.resources.gpus_per_replica
    if (isinstance(fixed, int) and fixed != tp) or arch.attention_heads % tp:
        return None
    for nodes in range(2, MAX_NODES_PER_REPLICA + 1):
        kv_gib = _kv_gib(spec, arch, gpu, quant, tp, nodes)
        kv_tokens = int(kv_gib * GIB / arch.kv_bytes_per_token()) if kv_gib > 0 else 0
        if kv_tokens >= needed:
            return _plan(spec, arch, gpu, quant, tp, kv_gib, kv_tokens, nodes)
    return None


def _plan(
    spec: InferenceServiceSpec,
    arch: ModelArch,
    gpu: GpuKind,
    quant: QuantFormat,
    tp: int,
    kv_gib: float,
    kv_tokens: int,
    nodes: int = 1,
) -> Plan:
    batch = spec.scaling.batch
    max_num_seqs = spec.engine.max_num_seqs or min(DEFAULT_MAX_NUM_SEQS, batch.max_concurrency)
    by_kv = kv_tokens // spec.engine.expected_sequence_tokens
    steps = step_model(arch, gpu, quant, tp, nodes)
    mean_context = spec.engine.expected_sequence_tokens / 2
    # One batch in flight per pipeline stage: the cap is that many batches within the ITL.
    per_stage = max(1, max_num_seqs // nodes)
    by_itl = steps.largest_batch_within(spec.slo.itl_seconds, mean_context, per_stage) * nodes
    min_itl = steps.decode_itl(1, mean_context)
    notes: list[str] = []
    shape = f"{tp}x{gpu.id}" if nodes == 1 else f"{nodes} nodes x {tp}x{gpu.id}"
    if nodes > 1:
        notes.append(
            f"a replica spans {nodes} nodes of {tp} GPUs (pipeline parallel {nodes}), "
            "one LeaderWorkerSet group started and stopped as a whole"
        )
    if by_itl == 0:
        notes.append(
            f"ITL objective {spec.slo.itl_seconds * 1000:.0f} ms is below the modeled "
            f"{min_itl * 1000:.0f} ms of a single sequence on {shape}; consider a "
            "faster GPU, more GPUs per replica or a quantized model"
        )
    ceiling = min(by_kv, max_num_seqs, batch.max_concurrency)
    max_concurrency = max(batch.min_concurrency, min(ceiling, by_itl or batch.min_concurrency))
    per_stage_cap = max(1, max_concurrency // nodes)
    # A step may carry pieces of several prompts: the chunk is not bounded by maxModelLen.
    itl_budget = steps.largest_chunk_within(
        spec.slo.itl_seconds,
        per_stage_cap,
        mean_context,
        max(spec.model.max_model_len, token_budget.vllm_default(gpu.memory_gib)),
    )
    budget = token_budget.choose(
        spec_tokens=spec.engine.max_num_batched_tokens,
        chunked_prefill=spec.engine.enable_chunked_prefill,
        max_model_len=spec.model.max_model_len,
        gpu_memory_gib=gpu.memory_gib,
        itl_budget=itl_budget,
        max_num_seqs=max(max_num_seqs, max_concurrency),
        step_seconds=lambda n: steps.mixed_step(n, per_stage_cap, mean_context),
        itl_seconds=spec.slo.itl_seconds,
        batch=per_stage_cap,
    )
    if budget.source == token_budget.SOURCE_ITL:
        notes.append(f"maxNumBatchedTokens {budget.tokens}: {budget.reason}")
    return Plan(
        model_name=arch.display,
        gpu=gpu.id,
        quantization=quant.id,
        vllm_quantization=catalog.vllm_quantization_flag(quant.id, spec.model.checkpoint_format),
        allow_deprecated_quantization=catalog.checkpoint(
            spec.model.checkpoint_format, quant.id
        ).deprecated,
        tensor_parallel=tp,
        weights_gib=round(weights_gib(arch, quant), 1),
        kv_cache_gib=round(kv_gib, 1),
        kv_cache_tokens=kv_tokens,
        max_concurrency=max_concurrency,
        max_num_seqs=max(max_num_seqs, max_concurrency),
        max_num_batched_tokens=budget.tokens,
        max_num_batched_tokens_source=budget.source,
        min_itl_seconds=round(min_itl, 4),
        notes=tuple(notes),
        nodes=nodes,
        itl_budget_tokens=itl_budget,
    )


def _why_not(
    spec: InferenceServiceSpec, arch: ModelArch, gpu: GpuKind, quant: QuantFormat, needed: int
) -> str:
    tp = max(_tp_candidates(spec, gpu))
    need = weights_gib(arch, quant)
    have = tp * gpu.memory_gib
    label = "bf16" if quant.id == "none" else quant.id
    if need >= have * spec.engine.gpu_memory_utilization:
        text = (
            f"{arch.display} needs about {need:.0f} GiB of weights at {label}; "
            f"{tp}x{gpu.id} give {have:.0f} GiB"
        )
        return text + _smaller_formats_hint(spec, arch, gpu, tp)
    return (
        f"{arch.display} at {label} on {tp}x{gpu.id} leaves KV-cache room for fewer than "
        f"{needed} tokens (maxModelLen {spec.model.max_model_len}, "
        f"{spec.scaling.batch.min_concurrency} x {spec.engine.expected_sequence_tokens}-token "
        "requests); lower spec.model.maxModelLen or spec.scaling.batch.minConcurrency, "
        "quantize, or use more or larger GPUs"
    )


def _smaller_formats_hint(
    spec: InferenceServiceSpec, arch: ModelArch, gpu: GpuKind, tp: int
) -> str:
    for quant_id in ("fp8", "awq"):
        quant = catalog.quant(quant_id)
        size = weights_gib(arch, quant)
        if size < tp * gpu.memory_gib * spec.engine.gpu_memory_utilization:
            field = "spec.quantization.method"
            return f"; set {field}: {quant_id} (about {size:.0f} GiB) to fit on {tp} GPUs"
    return "; choose a larger GPU kind"


def plan(spec: InferenceServiceSpec, multi_node: bool = False) -> Plan | Infeasible:
    """Plan a replica. `quantization: auto` tries each allowed method and keeps the one with the
    fewest GPUs per replica, preferring higher quality (none > fp8 > int8 > awq > gptq) on a tie.
    `multi_node`: a replica may span several nodes when no single node fits (only where
    multi-node replicas can run; otherwise the refusal says that they would fit)."""
    method, stored = spec.quantization.method, spec.model.checkpoint_format
    if method != "auto":
        problem = catalog.quantization_problem(method, stored)
        return Infeasible(problem) if problem else plan_for_quant(spec, method, multi_node)
    allowed: list[str] = list(spec.quantization.allowed or DEFAULT_AUTO_ALLOWED)
    if stored != "auto":  # a quantized checkpoint runs only at its own precision
        allowed = [q for q in allowed if not catalog.quantization_problem(q, stored)] or [
            catalog.checkpoint(stored).precision
        ]
    ordered = [q for q in catalog.QUALITY_ORDER if q in allowed]
    results = [plan_for_quant(spec, q, multi_node) for q in ordered]
    feasible = [r for r in results if isinstance(r, Plan)]
    if not feasible:
        reasons = "; ".join(r.reason for r in results if isinstance(r, Infeasible))
        return Infeasible(f"no allowed quantization fits: {reasons}")
    return min(feasible, key=lambda p: (p.gpus_per_replica, ordered.index(p.quantization)))

"""The spec a user writes: model, quantization, engine, resources, SLO, scaling, secrets."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from tokenscale.api.v1alpha1.base import (
    _SHELL_CHARS,
    DEFAULT_WORKER_IMAGE,
    QUANTITY_PATTERN,
    SHELL_CHARS_CEL,
    Rule,
    _Model,
)

GpuKindId = Literal["h100-80gb", "h200-141gb", "a100-80gb", "a100-40gb", "l40s-48gb", "l4-24gb"]
ModelArchId = Literal[
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "mistral-7b",
    "mixtral-8x7b",
]
QuantMethod = Literal["none", "fp8", "awq", "gptq", "int8"]
ScalingMode = Literal["auto", "advisory", "off"]


class CustomArchitecture(_Model):
    """Shape of a model that is not in the catalog."""

    parameters_billions: float = Field(
        gt=0, le=10000, description="Total parameter count in billions, e.g. 8.03."
    )
    active_parameters_billions: float | None = Field(
        default=None,
        gt=0,
        le=10000,
        description="Parameters read per token for mixture-of-experts models; defaults to "
        "parametersBillions.",
    )
    layers: int = Field(ge=1, le=1000, description="Number of transformer layers.")
    hidden_size: int = Field(ge=64, le=131072, description="Hidden (model) dimension.")
    kv_heads: int = Field(ge=1, le=1024, description="Key/value attention heads (GQA groups).")
    head_dim: int = Field(ge=16, le=1024, description="Dimension of one attention head.")


class ModelSpec(_Model):
    """Which model to serve and how long its sequences may be."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.architecture) != has(self.parameters)",
            "set exactly one of spec.model.architecture (a catalog id such as "
            "llama-3.1-8b) or spec.model.parameters (an explicit shape)",
            check=lambda m: (m.architecture is not None) != (m.parameters is not None),
        ),
    )

    source: str = Field(
        pattern=r"^(hf://[A-Za-z0-9][\w.\-]*/[\w.\-]+|pvc://[a-z0-9][a-z0-9.\-]*/.+|s3://[a-z0-9][a-z0-9.\-]*/.+)$",
        max_length=512,
        description="Where the weights come from: hf://org/name (Hugging Face hub), "
        "pvc://claim/path (a PersistentVolumeClaim in the same namespace) or s3://bucket/path.",
    )
    revision: str | None = Field(
        default=None,
        max_length=128,
        description="Model revision (branch, tag or commit) to pin; changing it rolls the pods.",
    )
    served_name: str | None = Field(
        default=None,
        max_length=256,
        description="Model name clients send in requests; defaults to the InferenceService name.",
    )
    architecture: ModelArchId | None = Field(
        default=None,
        description="Catalog architecture id used for capacity planning, e.g. llama-3.1-70b. "
        "Set this or parameters.",
    )
    parameters: CustomArchitecture | None = Field(
        default=None,
        description="Explicit architecture for models outside the catalog. Set this or "
        "architecture.",
    )
    max_model_len: int = Field(
        default=8192,
        ge=256,
        le=1048576,
        description="Longest prompt plus output in tokens (vLLM --max-model-len).",
    )
    dtype: Literal["auto", "bfloat16", "float16"] = Field(
        default="bfloat16", description="Activation and unquantized weight dtype (vLLM --dtype)."
    )


class QuantizationSpec(_Model):
    """Weight quantization, fixed or chosen by the planner."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.method) && self.method == 'auto') || !has(self.allowed)",
            "spec.quantization.allowed applies only when spec.quantization.method is "
            "auto; remove it or set method: auto",
            check=lambda m: m.method == "auto" or m.allowed is None,
        ),
        Rule(
            "!has(self.method) || self.method != 'auto' || !has(self.allowed) || "
            "size(self.allowed) > 0",
            "spec.quantization.allowed must list at least one method",
            check=lambda m: m.method != "auto" or m.allowed is None or len(m.allowed) > 0,
        ),
    )

    method: Literal["none", "fp8", "awq", "gptq", "int8", "auto"] = Field(
        default="none",
        description="none (the checkpoint's dtype), fp8, awq, gptq, int8, or auto: the planner "
        "picks, among allowed, the method needing the fewest GPUs per replica (quality first "
        "on a tie). awq and gptq need a checkpoint quantized that way.",
    )
    allowed: list[QuantMethod] | None = Field(
        default=None,
        max_length=5,
        description="Methods auto may choose from; defaults to none and fp8 (no special "
        "checkpoint needed).",
    )


class EngineSpec(_Model):
    """The vLLM engine each replica runs."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.extraArgs) || self.extraArgs.all(a, !a.matches('" + SHELL_CHARS_CEL + "'))",
            "spec.engine.extraArgs takes one argument per list item: split "
            "'--flag value' into '--flag', 'value'; shell syntax (; & | $ ` < >) is "
            "never interpreted",
            check=lambda m: not any(_SHELL_CHARS.search(a) for a in m.extra_args),
        ),
    )

    image: str = Field(
        default=DEFAULT_WORKER_IMAGE,
        max_length=512,
        description="Worker image (vLLM plus the tokenscale gateway).",
    )
    extra_args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra vLLM arguments, one per item. Flags tokenscale plans "
        "(--tensor-parallel-size, --quantization, --max-model-len, ...) are rejected here.",
    )
    enable_prefix_caching: bool = Field(default=True, description="vLLM automatic prefix caching.")
    enable_chunked_prefill: bool = Field(
        default=True, description="vLLM chunked prefill (long prompts share steps with decodes)."
    )
    max_num_seqs: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Upper bound on sequences per engine step (vLLM --max-num-seqs); the "
        "planner may choose lower.",
    )
    max_num_batched_tokens: int | None = Field(
        default=None,
        ge=256,
        le=1048576,
        description="Token budget per engine step (vLLM --max-num-batched-tokens).",
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        ge=0.5,
        le=0.98,
        description="Share of GPU memory vLLM may use (weights, KV cache, activations).",
    )
    expected_sequence_tokens: int = Field(
        default=2048,
        ge=16,
        le=1048576,
        description="Typical prompt plus output tokens per request, used to size the batch "
        "the KV cache holds until observed token counts take over.",
    )


class Toleration(_Model):
    """A pod toleration, as in core/v1."""

    key: str | None = Field(default=None, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value when operator is Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


class ResourcesSpec(_Model):
    """GPUs and the rest of each replica's resources and placement."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.gpusPerReplica) || (type(self.gpusPerReplica) == string ? "
            "self.gpusPerReplica == 'auto' : self.gpusPerReplica in [1, 2, 4, 8])",
            "spec.resources.gpusPerReplica must be 1, 2, 4, 8 or auto",
            check=lambda m: (
                m.gpus_per_replica == "auto"
                if isinstance(m.gpus_per_replica, str)
                else m.gpus_per_replica in (1, 2, 4, 8)
            ),
        ),
    )

    gpu: GpuKindId = Field(
        description="GPU kind from the catalog: h100-80gb, h200-141gb, a100-80gb, a100-40gb, "
        "l40s-48gb or l4-24gb. Pods select nodes labelled tokenscale.io/gpu=<kind>."
    )
    gpus_per_replica: int | Literal["auto"] = Field(
        default="auto",
        description="Tensor-parallel size: 1, 2, 4, 8, or auto for the smallest that fits.",
    )
    cpu: str = Field(default="8", pattern=QUANTITY_PATTERN, description="CPU request per replica.")
    memory: str = Field(
        default="64Gi", pattern=QUANTITY_PATTERN, description="Memory request per replica."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Extra node labels the pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Pod tolerations (e.g. GPU taints)."
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Pod affinity, as core/v1 Affinity (passed through unchanged).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass for the worker pods."
    )


class SloSpec(_Model):
    """The latency objective tokenscale holds at the lowest GPU cost."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.e2eSeconds) || !has(self.ttftSeconds) || self.e2eSeconds > self.ttftSeconds",
            "spec.slo.e2eSeconds must be greater than spec.slo.ttftSeconds",
            check=lambda m: m.e2e_seconds is None or m.e2e_seconds > m.ttft_seconds,
        ),
    )

    ttft_seconds: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="Time to first token objective in seconds, at the given percentile.",
    )
    itl_seconds: float = Field(
        default=0.05,
        gt=0,
        le=10,
        description="Inter-token latency objective in seconds, at the given percentile.",
    )
    e2e_seconds: float | None = Field(
        alias="e2eSeconds",
        default=None,
        gt=0,
        le=3600,
        description="Optional end-to-end request latency objective.",
    )
    percentile: float = Field(
        default=95, ge=50, le=99.9, description="Percentile the objectives apply to."
    )


class BatchTuningSpec(_Model):
    """Live per-replica batch-size (concurrency cap) tuning."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.minConcurrency) || !has(self.maxConcurrency) || "
            "self.minConcurrency <= self.maxConcurrency",
            "spec.scaling.batch.minConcurrency must not exceed maxConcurrency",
            check=lambda m: m.min_concurrency <= m.max_concurrency,
        ),
    )

    enabled: bool = Field(
        default=True,
        description="Tune each replica's concurrency cap to hold the inter-token objective.",
    )
    min_concurrency: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Lowest concurrency cap per replica; the planner also requires KV-cache "
        "room for this many requests of engine.expectedSequenceTokens.",
    )
    max_concurrency: int = Field(
        default=256, ge=1, le=4096, description="Highest concurrency cap per replica."
    )


class ScalingSpec(_Model):
    """How the replica count follows load."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || "
            "self.minReplicas <= self.maxReplicas",
            "spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas",
            check=lambda m: m.min_replicas <= m.max_replicas,
        ),
    )

    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Most replicas.")
    mode: ScalingMode = Field(
        default="auto",
        description="auto acts on decisions; advisory computes and reports them (status, "
        "Events) without acting; off leaves replicas at minReplicas.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="Scale down only to the highest recommendation of this trailing window; "
        "a recommendation more than 20% above the present need counts only for "
        "coldStartSeconds (a passed burst is not paid for longer than a restart takes).",
    )
    max_scale_up_rate: float = Field(
        default=10.0,
        ge=1.0,
        le=1000,
        description="Replicas may grow at most by this factor per decision (at least +4).",
    )
    max_scale_down_rate: float = Field(
        default=2.0,
        ge=1.0,
        le=1000,
        description="Replicas may shrink at most by this factor per decision.",
    )
    cold_start_seconds: float = Field(
        default=120,
        ge=0,
        le=3600,
        description="Expected time from pod creation to serving; starting replicas count as "
        "coming capacity for this long.",
    )
    batch: BatchTuningSpec = Field(
        default_factory=BatchTuningSpec, description="Per-replica batch-size tuning."
    )


class SecretKeyRef(_Model):
    """A key in a Secret in the InferenceService's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field(default="token", min_length=1, max_length=253, description="Key in it.")


class SecretsSpec(_Model):
    """Credentials, always by reference."""

    hub_token: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding the model hub token (exposed to vLLM as HF_TOKEN).",
    )


class InferenceServiceSpec(_Model):
    """Desired state of an InferenceService."""

    model: ModelSpec = Field(description="The model and its sequence limits.")
    quantization: QuantizationSpec = Field(
        default_factory=QuantizationSpec, description="Weight quantization."
    )
    engine: EngineSpec = Field(default_factory=EngineSpec, description="vLLM engine settings.")
    resources: ResourcesSpec = Field(description="GPU kind, GPUs per replica and placement.")
    slo: SloSpec = Field(default_factory=SloSpec, description="Latency objective.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Autoscaling.")
    secrets: SecretsSpec = Field(default_factory=SecretsSpec, description="Secret references.")

"""The spec a user writes: model, quantization, engine, resources, SLO, scaling, secrets."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field

from tokenscale.api.v1alpha1 import cel
from tokenscale.api.v1alpha1.affinity import Affinity
from tokenscale.api.v1alpha1.base import (
    DEFAULT_WORKER_IMAGE,
    DNS1123_SUBDOMAIN,
    QUANTITY_PATTERN,
    SHELL_CHARS_CEL,
    Rule,
    _Model,
)
from tokenscale.api.v1alpha1.engine_rules import EXTRA_ARGS_RULES, IMAGE_RULE
from tokenscale.api.v1alpha1.objectives import ScalingSpec, SloSpec
from tokenscale_contract.extra_args_guard import option_problems

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
CheckpointFormatId = Literal[
    "auto",
    "bf16",
    "fp8",
    "fbgemm_fp8",
    "compressed-tensors-fp8",
    "compressed-tensors-int8",
    "awq",
    "gptq",
]


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


class ModelCacheSpec(_Model):
    """Where the shared copy of the weights lives: an existing claim, or one tokenscale creates."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.claimName) != has(self.storageClassName)",
            "spec.model.cache: set exactly one of claimName (an existing ReadWriteMany "
            "PersistentVolumeClaim) or storageClassName (tokenscale creates the claim)",
        ),
        Rule(
            "!has(self.size) || has(self.storageClassName)",
            "spec.model.cache.size applies only with storageClassName (the claim tokenscale "
            "creates); an existing claim keeps its own size",
        ),
    )

    claim_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="An existing ReadWriteMany PersistentVolumeClaim in the service's namespace.",
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="StorageClass of the ReadWriteMany claim tokenscale creates "
        "(<name>-model-cache), e.g. a Filestore, EFS or CephFS class.",
    )
    size: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="Size of the claim tokenscale creates; default: the checkpoint plus 20%.",
    )


class ModelSpec(_Model):
    """Which model to serve and how long its sequences may be."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.architecture) != has(self.parameters)",
            "set exactly one of spec.model.architecture (a catalog id such as "
            "llama-3.1-8b) or spec.model.parameters (an explicit shape)",
        ),
        Rule(
            "!has(self.revision) || self.source.startsWith('hf://')",
            "spec.model.revision applies only to hf:// sources: a pvc:// or s3:// source is one "
            "fixed copy of the weights; remove revision, or point spec.model.source at the "
            "directory holding that revision",
        ),
        Rule(
            "!has(self.revision) || self.revision.matches('^[A-Za-z0-9][-A-Za-z0-9._/]*$')",
            "spec.model.revision must be a branch, tag or commit id (letters, digits, - . _ /), "
            "e.g. main or 0e9e39f",
        ),
        Rule(
            "!self.source.matches('(^[a-z0-9]+://|/)[.][.]?(/|$)')",
            "spec.model.source must not contain . or .. path segments: they would leave the "
            "claim or bucket; give the path inside it",
        ),
        Rule(
            "!self.source.startsWith('s3://') || has(self.cache)",
            "spec.model.source: an s3:// model is read through the model cache: set "
            "spec.model.cache.storageClassName (tokenscale creates a ReadWriteMany claim) or "
            "spec.model.cache.claimName (an existing one), and one Job copies the weights onto it",
        ),
        Rule(
            "!self.source.startsWith('pvc://') || !has(self.cache)",
            "spec.model.cache: a pvc:// model is on shared storage already; remove "
            "spec.model.cache",
        ),
        Rule(
            "!has(self.s3EndpointUrl) || self.source.startsWith('s3://')",
            "spec.model.s3EndpointUrl applies only to s3:// sources; remove it",
        ),
    )

    source: str = Field(
        pattern=r"^(hf://[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9_.\-]+|pvc://[a-z0-9][a-z0-9.\-]*/.+|s3://[a-z0-9][a-z0-9.\-]*/.+)$",
        max_length=512,
        description="Where the weights come from: hf://org/name (Hugging Face hub), "
        "pvc://claim/path (a PersistentVolumeClaim in the same namespace) or s3://bucket/path.",
    )
    revision: str | None = Field(
        default=None,
        max_length=128,
        description="Model revision (branch, tag or commit) to pin; changing it rolls the pods.",
    )
    cache: ModelCacheSpec | None = Field(
        default=None,
        json_schema_extra={"tokenscaleUnsetMeansOff": True},
        description="A shared model cache: one Job copies the weights onto a ReadWriteMany "
        "claim, every replica mounts it read-only, and replicas scale past the first only once "
        "the copy is complete. Required for s3:// sources; optional for hf:// sources.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?/?$",
        description="S3-compatible endpoint for s3:// sources (MinIO, Ceph, a cloud's S3 "
        "API), e.g. http://minio.storage:9000; unset: AWS S3. Credentials come from "
        "spec.secrets.s3Credentials.",
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
    checkpoint_format: CheckpointFormatId = Field(
        default="auto",
        description="How the checkpoint stores its weights (its config.json quantization_config): "
        "bf16 (unquantized, also fp16), fp8, fbgemm_fp8 (e.g. meta-llama/Llama-3.1-405B-Instruct-"
        "FP8), compressed-tensors-fp8, compressed-tensors-int8, awq or gptq; auto (default) is "
        "what spec.quantization.method implies: bf16 for none and fp8 (quantized on the fly), "
        "awq, gptq, compressed-tensors-int8 for int8. vLLM reads a quantized checkpoint's format "
        "itself; --quantization is passed only to quantize unquantized weights on the fly.",
    )


class QuantizationSpec(_Model):
    """Weight quantization, fixed or chosen by the planner."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.method) && self.method == 'auto') || !has(self.allowed)",
            "spec.quantization.allowed applies only when spec.quantization.method is "
            "auto; remove it or set method: auto",
        ),
        Rule(
            "!has(self.method) || self.method != 'auto' || !has(self.allowed) || "
            "size(self.allowed) > 0",
            "spec.quantization.allowed must list at least one method",
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


# The shell rule below, applied to one item.
_PASTED_SHELL = "self.matches('" + SHELL_CHARS_CEL + "')"


class EngineSpec(_Model):
    """The vLLM engine each replica runs."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.extraArgs) || self.extraArgs.all(a, !a.matches('" + SHELL_CHARS_CEL + "'))",
            "spec.engine.extraArgs takes one argument per list item: split "
            "'--flag value' into '--flag', 'value'; shell syntax (; & | $ ` < >) is "
            "never interpreted",
        ),
        IMAGE_RULE,
        *EXTRA_ARGS_RULES,
    )
    EXPLAINED_RULES: ClassVar[tuple[Rule, ...]] = EXTRA_ARGS_RULES

    image: str = Field(
        default=DEFAULT_WORKER_IMAGE,
        max_length=512,
        description="Worker image (vLLM plus the tokenscale gateway): an image reference "
        "such as registry.example.com/team/worker:1.2 or name@sha256:<64 hex digits>.",
    )
    # 512 characters an item, 64 items: bounds the API server's CEL cost for the extraArgs rules.
    extra_args: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra vLLM arguments, one per item. Options tokenscale plans "
        "(--tensor-parallel-size, --quantization, --max-model-len, ...), options that read "
        "files or run code from the model repository (--trust-remote-code, --config, ...) and "
        "options carrying secrets (--hf-token, --api-key: use spec.secrets) are refused, "
        "abbreviated or not, with the spec field to use instead.",
    )
    enable_prefix_caching: bool = Field(default=True, description="vLLM automatic prefix caching.")
    trust_remote_code: bool = Field(
        default=False,
        description="Let vLLM run Python code shipped in the model repository "
        "(--trust-remote-code), for architectures that need it. Off by default: that code runs "
        "in the worker pod with the model's credentials; never allowed through extraArgs.",
    )
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
        description="Token budget per engine step (vLLM --max-num-batched-tokens). Unset: the "
        "largest prompt chunk whose step beside a full cap of decoding requests stays within "
        "spec.slo.itlSeconds, vLLM's default where that chunk is larger or none fits "
        "(status.plan.maxNumBatchedTokensSource says which).",
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

    def _precise_problems(self) -> list[str]:
        # The argument, what vLLM reads it as, and the field to use instead; items the shell
        # rule refuses are left to its message.
        pasted = {i for i, a in enumerate(self.extra_args) if cel.holds(_PASTED_SHELL, a)}
        return option_problems(self.extra_args, skip=pasted)


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


def _gpus_number_or_auto(value: object) -> object:
    # One clear message instead of pydantic's two union branches; a bool is no count.
    if value == "auto" or (type(value) is int):
        return value
    raise ValueError(
        f"must be 1, 2, 4, 8 or auto, written as a YAML number or the word auto (got {value!r})"
    )


GpusPerReplica = Annotated[int | Literal["auto"], BeforeValidator(_gpus_number_or_auto)]


class ResourcesSpec(_Model):
    """GPUs and the rest of each replica's resources and placement."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.gpusPerReplica) || (type(self.gpusPerReplica) == string ? "
            "self.gpusPerReplica == 'auto' : self.gpusPerReplica in [1, 2, 4, 8])",
            "spec.resources.gpusPerReplica must be 1, 2, 4, 8 or auto",
        ),
        Rule(
            "!has(self.priorityClassName) || !self.priorityClassName.startsWith('system-')",
            "spec.resources.priorityClassName must not be a system-* class (system-node-critical "
            "and system-cluster-critical are for cluster components and can evict other pods); "
            "create a PriorityClass of your own and name it here",
        ),
        Rule(
            "!has(self.priorityClassName) || self.priorityClassName.matches('"
            + DNS1123_SUBDOMAIN
            + "')",
            "spec.resources.priorityClassName must be a PriorityClass name: lowercase letters, "
            "digits, - and ., starting and ending with a letter or digit",
        ),
    )

    gpu: GpuKindId = Field(
        description="GPU kind from the catalog: h100-80gb, h200-141gb, a100-80gb, a100-40gb, "
        "l40s-48gb or l4-24gb. Pods require nodes whose GPU Feature Discovery label "
        "nvidia.com/gpu.product names that kind (NVIDIA-L4, NVIDIA-H100-80GB-HBM3, ...; "
        "the chart's gpuNodes values change the label for other clouds)."
    )
    gpus_per_replica: Annotated[int | Literal["auto"], BeforeValidator(_gpus_number_or_auto)] = (
        Field(
            default="auto",
            description="Tensor-parallel size: 1, 2, 4, 8, or auto for the smallest that fits.",
        )
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
    affinity: Affinity | None = Field(
        default=None, description="Pod affinity, as core/v1 Affinity (validated field by field)."
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="PriorityClass for the worker pods; the system-* classes are reserved for "
        "cluster components.",
    )


class SecretKeyRef(_Model):
    """A key in a Secret in the InferenceService's namespace."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.name.matches('" + DNS1123_SUBDOMAIN + "')",
            "spec.secrets: a Secret name is lowercase letters, digits, - and ., starting and "
            "ending with a letter or digit (e.g. hf-token)",
        ),
        Rule(
            "!has(self.key) || self.key.matches('^[-._a-zA-Z0-9]+$')",
            "spec.secrets: a Secret key is letters, digits, -, _ and . (e.g. token)",
        ),
    )

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field(default="token", min_length=1, max_length=253, description="Key in it.")


class SecretName(_Model):
    """A Secret in the InferenceService's namespace, used by its conventional keys."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN, description="Secret name."
    )


class SecretsSpec(_Model):
    """Credentials, always by reference."""

    hub_token: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding the model hub token (exposed to vLLM as HF_TOKEN).",
    )
    s3_credentials: SecretName | None = Field(
        default=None,
        description="Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, given to the "
        "model cache's fill Job only (replicas read the cache, never the bucket); unset: the "
        "fill Job's pod identity (IRSA, Workload Identity).",
    )
    api_key: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding the API key clients must send to the workers as "
        "'Authorization: Bearer <key>' (probes and /metrics stay open); unset: no key needed.",
    )


class InferenceServiceSpec(_Model):
    """Desired state of an InferenceService."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.slo) || !has(self.slo.ttftSecondsPer1kPromptTokens) || "
            "(has(self.slo.ttftSeconds) ? double(self.slo.ttftSeconds) : 1.0) + "
            "double(self.slo.ttftSecondsPer1kPromptTokens) * "
            "double(has(self.model.maxModelLen) ? self.model.maxModelLen : 8192) / 1000.0 "
            "<= 3600.0",
            "spec.slo.ttftSecondsPer1kPromptTokens: the objective of the longest prompt admitted "
            "(ttftSeconds + the allowance x spec.model.maxModelLen / 1000) must be at most "
            "3600 s; lower the allowance or maxModelLen",
        ),
    )

    model: ModelSpec = Field(description="The model and its sequence limits.")
    quantization: QuantizationSpec = Field(
        default_factory=QuantizationSpec, description="Weight quantization."
    )
    engine: EngineSpec = Field(default_factory=EngineSpec, description="vLLM engine settings.")
    resources: ResourcesSpec = Field(description="GPU kind, GPUs per replica and placement.")
    slo: SloSpec = Field(default_factory=SloSpec, description="Latency objective.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Autoscaling.")
    secrets: SecretsSpec = Field(default_factory=SecretsSpec, description="Secret references.")

"""What the operator tells each worker: the planned engine settings, as the launcher reads them.

The document is the worker's own `WorkerConfig` model (one contract, validated on both sides); the
launcher turns it into vLLM's argument list, so the Deployment never carries a shell string, and
a plan change rolls the pods through the pod template.
"""

from __future__ import annotations

from typing import Any

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import model_cache
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.histogram_buckets import slo_buckets


def served_name(spec: InferenceServiceSpec, ref: ServiceRef) -> str:
    return spec.model.served_name or ref.name


def worker_config(spec: InferenceServiceSpec, plan: Plan, ref: ServiceRef) -> dict[str, Any]:
    """The worker configuration document (JSON keys as WorkerConfig's aliases)."""
    engine = spec.engine
    config = WorkerConfig(
        model_source=spec.model.source,
        revision=spec.model.revision,
        model_cache_key=model_cache.key(spec) if model_cache.enabled(spec) else None,
        served_name=served_name(spec, ref),
        quantization=plan.vllm_quantization,
        allow_deprecated_quantization=plan.allow_deprecated_quantization,
        dtype=spec.model.dtype,
        tensor_parallel_size=plan.tensor_parallel,
        pipeline_parallel_size=plan.nodes if plan.nodes > 1 else None,
        max_model_len=spec.model.max_model_len,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        max_num_seqs=plan.max_num_seqs,
        max_num_batched_tokens=plan.max_num_batched_tokens,
        enable_prefix_caching=engine.enable_prefix_caching,
        trust_remote_code=engine.trust_remote_code,
        enable_chunked_prefill=engine.enable_chunked_prefill,
        port=contract.ENGINE_PORT,
        extra_args=list(engine.extra_args),
        histogram_buckets=slo_buckets(spec.slo.ttft_seconds, spec.slo.itl_seconds),
    )
    return config.model_dump(by_alias=True, exclude_none=True)

"""Which vLLM options `spec.engine.extraArgs` may not set, why, and what to use instead.

Keyed by argparse destination, not by spelling: `-tp 8`, `--tensor-parallel=8` and
`--tensor_parallel_size=8` all set `tensor_parallel_size` (vllm_options resolves the spelling).
Dependency-free: the launcher, the operator and the CRD generator (its CEL rules) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Group = Literal["parallel", "plan", "model", "contract", "code", "secret"]


@dataclass(frozen=True)
class Refusal:
    group: Group
    use: str  # the spec field to set instead, or why nothing replaces the option


_GPUS = "spec.resources.gpusPerReplica (a replica is gpusPerReplica GPUs of one node; "
_GPUS += "spec.scaling adds replicas)"
_KV = "spec.engine.gpuMemoryUtilization (the plan sizes the KV cache from it)"
_PLAIN = "the gateway reaches the engine over plain HTTP on 127.0.0.1:8001"

REFUSED: dict[str, Refusal] = {
    # The capacity plan: these decide GPUs, memory and batch sizes.
    "tensor_parallel_size": Refusal("parallel", _GPUS),
    "pipeline_parallel_size": Refusal("parallel", _GPUS),
    "data_parallel_size": Refusal("parallel", _GPUS),
    "data_parallel_size_local": Refusal("parallel", _GPUS),
    "data_parallel_rank": Refusal("parallel", _GPUS),
    "data_parallel_start_rank": Refusal("parallel", _GPUS),
    "data_parallel_address": Refusal("parallel", _GPUS),
    "data_parallel_rpc_port": Refusal("parallel", _GPUS),
    "data_parallel_backend": Refusal("parallel", _GPUS),
    "data_parallel_external_lb": Refusal("parallel", _GPUS),
    "data_parallel_hybrid_lb": Refusal("parallel", _GPUS),
    "data_parallel_multi_port_external_lb": Refusal("parallel", _GPUS),
    "data_parallel_supervisor_port": Refusal("parallel", _GPUS),
    "decode_context_parallel_size": Refusal("parallel", _GPUS),
    "prefill_context_parallel_size": Refusal("parallel", _GPUS),
    "nnodes": Refusal("parallel", _GPUS),
    "node_rank": Refusal("parallel", _GPUS),
    "master_addr": Refusal("parallel", _GPUS),
    "master_port": Refusal("parallel", _GPUS),
    "distributed_executor_backend": Refusal("parallel", _GPUS),
    "enable_elastic_ep": Refusal("parallel", _GPUS),
    "elastic_ep_max_dp_size": Refusal("parallel", _GPUS),
    "quantization": Refusal("plan", "spec.quantization.method"),
    "quantization_config": Refusal("plan", "spec.quantization.method"),
    "kv_cache_dtype": Refusal("plan", _KV),
    "max_model_len": Refusal("plan", "spec.model.maxModelLen"),
    "gpu_memory_utilization": Refusal("plan", "spec.engine.gpuMemoryUtilization"),
    "kv_cache_memory_bytes": Refusal("plan", _KV),
    "num_gpu_blocks_override": Refusal("plan", _KV),
    "cpu_offload_gb": Refusal("plan", _KV),
    "kv_offloading_size": Refusal("plan", _KV),
    "max_num_seqs": Refusal("plan", "spec.engine.maxNumSeqs"),
    "max_num_batched_tokens": Refusal("plan", "spec.engine.maxNumBatchedTokens"),
    "dtype": Refusal("plan", "spec.model.dtype"),
    "enable_prefix_caching": Refusal("plan", "spec.engine.enablePrefixCaching"),
    "enable_chunked_prefill": Refusal("plan", "spec.engine.enableChunkedPrefill"),
    # The model's identity.
    "model": Refusal("model", "spec.model.source"),
    "served_model_name": Refusal("model", "spec.model.servedName"),
    "revision": Refusal("model", "spec.model.revision"),
    "code_revision": Refusal("model", "spec.model.revision"),
    "tokenizer_revision": Refusal("model", "spec.model.revision"),
    "tokenizer": Refusal("model", "spec.model.source (the tokenizer ships with the model)"),
    # The worker contract: the gateway in front of the engine relies on these.
    "host": Refusal("contract", "the engine listens on 127.0.0.1 behind the gateway"),
    "port": Refusal("contract", "the engine port is 8001; the gateway serves 8000"),
    "uds": Refusal("contract", _PLAIN),
    "grpc": Refusal("contract", _PLAIN),
    "grpc_port": Refusal("contract", _PLAIN),
    "ssl_certfile": Refusal("contract", _PLAIN),
    "ssl_keyfile": Refusal("contract", _PLAIN),
    "ssl_ca_certs": Refusal("contract", _PLAIN),
    "ssl_cert_reqs": Refusal("contract", _PLAIN),
    "enable_ssl_refresh": Refusal("contract", _PLAIN),
    "root_path": Refusal("contract", "the gateway forwards the OpenAI paths unprefixed"),
    "headless": Refusal("contract", "the gateway needs the engine's API server"),
    "disable_log_stats": Refusal("contract", "the autoscaler reads the engine's metrics"),
    "custom_histogram_buckets": Refusal(
        "contract", "tokenscale sets the latency buckets around spec.slo, where it reads them"
    ),
    "download_dir": Refusal("contract", "weights come from spec.model.source"),
    "help": Refusal("contract", "vLLM would print its help and exit"),
    # Anything that reads files or imports code from outside the image.
    "trust_remote_code": Refusal(
        "code",
        "it runs Python code from the model repository; to allow that, set "
        "spec.engine.trustRemoteCode: true",
    ),
    "config": Refusal("code", "it reads options from a file, past this guard"),
    "allowed_local_media_path": Refusal("code", "it lets requests read the pod's files"),
    "chat_template": Refusal("code", "it reads a template file"),
    "trust_request_chat_template": Refusal("code", "it runs templates sent by clients"),
    "hf_config_path": Refusal("code", "it reads a model config from elsewhere"),
    "generation_config": Refusal("code", "it reads a generation config from a folder"),
    "tool_parser_plugin": Refusal("code", "it imports a Python file"),
    "reasoning_parser_plugin": Refusal("code", "it imports a Python file"),
    "io_processor_plugin": Refusal("code", "it loads a plugin"),
    "logits_processors": Refusal("code", "it imports Python classes"),
    "middleware": Refusal("code", "it imports Python code"),
    "worker_cls": Refusal("code", "it imports Python classes"),
    "worker_extension_cls": Refusal("code", "it imports Python classes"),
    "scheduler_cls": Refusal("code", "it imports Python classes"),
    "model_class_overrides": Refusal("code", "it imports Python classes"),
    "model_loader_extra_config": Refusal("code", "it configures loaders that read files"),
    "kv_transfer_config": Refusal("code", "it can import a connector module by path"),
    "ec_transfer_config": Refusal("code", "it can import a connector module by path"),
    "lora_modules": Refusal("code", "it reads adapters from paths"),
    "default_mm_loras": Refusal("code", "it reads adapters from paths"),
    "log_config_file": Refusal("code", "it reads a file"),
    "logging_config": Refusal("code", "it reads a file"),
    "mm_encoder_fp8_scale_path": Refusal("code", "it reads a file"),
    "mm_encoder_fp8_scale_save_path": Refusal("code", "it writes a file"),
    "tool_server": Refusal("code", "it starts tool servers"),
    # Secrets: never as literal arguments, which land in plain text in the Deployment.
    "hf_token": Refusal("secret", "spec.secrets.hubToken (a Secret reference)"),
    "api_key": Refusal("secret", "spec.secrets.apiKey (a Secret reference)"),
}

GROUP_TITLES: dict[Group, str] = {
    "parallel": "which tokenscale derives from the spec",
    "plan": "which tokenscale derives from the spec",
    "model": "which tokenscale derives from the spec",
    "contract": "which the worker contract fixes",
    "code": "which makes vLLM read files or run code from outside the image",
    "secret": "which would put a secret in plain text in the Deployment",
}

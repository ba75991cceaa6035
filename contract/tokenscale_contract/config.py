"""The worker's configuration: what the operator renders into the mounted JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tokenscale_contract.histogram_buckets import check_buckets
from tokenscale_contract.interface import CONFIG_ENV, CONFIG_PATH, ENGINE_PORT


class WorkerConfig(BaseModel):
    """One vLLM engine as planned by the operator (field names are the JSON keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model_source: str = Field(
        alias="modelSource", description="hf://org/name, pvc://claim/path or s3://bucket/path"
    )
    revision: str | None = None
    # Set when the weights are read from the shared model cache: vLLM gets the cache's
    # directory for this key (model_cache.cache_key) instead of the source.
    model_cache_key: str | None = Field(default=None, alias="modelCacheKey", min_length=1)
    served_name: str = Field(alias="servedName", min_length=1)
    quantization: str | None = Field(default=None, description="vLLM --quantization value")
    # The checkpoint's own quantization method is deprecated in vLLM (fbgemm_fp8 in 0.32), which
    # refuses to load it without --allow-deprecated-quantization.
    allow_deprecated_quantization: bool = Field(default=False, alias="allowDeprecatedQuantization")
    dtype: str = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1, alias="tensorParallelSize")
    # Set (2 or more): one replica spans this many nodes (a LeaderWorkerSet group), one pipeline
    # stage each; absent for a replica on one node.
    pipeline_parallel_size: int | None = Field(
        default=None, ge=2, le=8, alias="pipelineParallelSize"
    )
    max_model_len: int | None = Field(default=None, ge=1, alias="maxModelLen")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, alias="gpuMemoryUtilization")
    max_num_seqs: int | None = Field(default=None, ge=1, alias="maxNumSeqs")
    max_num_batched_tokens: int | None = Field(default=None, ge=1, alias="maxNumBatchedTokens")
    enable_prefix_caching: bool = Field(default=True, alias="enablePrefixCaching")
    # spec.engine.trustRemoteCode: the one way to --trust-remote-code (extraArgs refuse it).
    trust_remote_code: bool = Field(default=False, alias="trustRemoteCode")
    enable_chunked_prefill: bool = Field(default=True, alias="enableChunkedPrefill")
    port: int = Field(default=ENGINE_PORT, ge=1, le=65535)
    extra_args: list[str] = Field(default_factory=list, alias="extraArgs")
    # vLLM's --custom-histogram-buckets: bounds per bucket family, fine around the objectives
    # (tokenscale_contract.histogram_buckets) so the autoscaler's percentiles read true.
    histogram_buckets: dict[str, list[float]] | None = Field(default=None, alias="histogramBuckets")

    @field_validator("histogram_buckets")
    @classmethod
    def _vllm_bucket_rules(
        cls, value: dict[str, list[float]] | None
    ) -> dict[str, list[float]] | None:
        return None if value is None else check_buckets(value)


class ConfigError(ValueError):
    """The configuration is missing or malformed; the message names where and what."""


def load_config(path: str | None = None, env: dict[str, str] | None = None) -> WorkerConfig:
    """Read the config from `path`, else env `TOKENSCALE_WORKER_CONFIG` (inline JSON), else the
    mounted default `CONFIG_PATH`."""
    environ = os.environ if env is None else env
    if path is None and environ.get(CONFIG_ENV):
        source, text = f"${CONFIG_ENV}", environ[CONFIG_ENV]
    else:
        file = Path(path or CONFIG_PATH)
        try:
            source, text = str(file), file.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(
                f"cannot read worker config {file}: {err.strerror}; mount it or set ${CONFIG_ENV}"
            ) from None
    try:
        return WorkerConfig.model_validate(json.loads(text))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: not JSON ({err.msg} at line {err.lineno})") from None
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None

"""The worker container's probes, sized to what a real replica does.

Startup: a replica downloads or reads its weights and then warms the engine up (CUDA graphs,
torch.compile) before /health answers. The budget is the larger of

    checkpoint / load bandwidth + warm-up     (Llama-3.1-70B bf16: 131.5 GiB / 0.25 GiB/s = 526 s
                                               + 180 s warm-up = 706 s -> 142 probes of 5 s)
    2 x spec.scaling.coldStartSeconds          (what the user told the autoscaler to expect)
    10 minutes                                 (the floor anchors use: production-stack, KServe)

Readiness and liveness answer within `PROBE_TIMEOUT_SECONDS`, above the gateway's own wait on
the engine's /health (contract.ENGINE_HEALTH_TIMEOUT_S): with Kubernetes' default timeout of 1 s a
busy engine answering in 1.5 s would mark a healthy pod unready. Readiness needs 3 misses in a
row (one slow answer under load must not take a replica out of rotation).
"""

from __future__ import annotations

import math
from typing import Any

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import names
from tokenscale.domain.capacity import Plan
from tokenscale_contract import catalog
from tokenscale_contract import interface as contract

PROBE_PERIOD_SECONDS = 5
LIVENESS_PERIOD_SECONDS = 10
# Bytes per second a replica reads weights at when it starts: a hub download or a network volume
# (a single HF download stream or a PD-balanced disk gives 200-300 MiB/s).
LOAD_BYTES_PER_SECOND = 256 * 1024**2
# A single client reading the shared model cache (a ReadWriteMany network volume: Filestore
# Zonal, EFS Elastic and CephFS read 1-1.5 GiB/s per client for large sequential files); the low
# end, so a replica is expected no sooner than it can come.
CACHE_READ_BYTES_PER_SECOND = 1024**3
# Engine start after the weights are in memory: CUDA graph capture and compilation.
WARMUP_SECONDS = 180
# A multi-node group's ranks meet after every node is up: torch.distributed's TCPStore on the
# leader (vLLM's --master-port) waits for the last rank, then NCCL builds its communicators over
# all the group's GPUs and the engine profiles across every stage. An order of magnitude, not a
# measurement.
GROUP_RENDEZVOUS_SECONDS = 30.0
STARTUP_FLOOR_SECONDS = 600
# spec.scaling.coldStartSeconds when unset and nothing better is known (no model cache).
DEFAULT_COLD_START_SECONDS = 120.0
# Above the gateway's engine health wait, with room for the gateway's own scheduling.
PROBE_TIMEOUT_SECONDS = math.ceil(contract.ENGINE_HEALTH_TIMEOUT_S) + 3
READINESS_FAILURES = 3
LIVENESS_FAILURES = 6


def checkpoint_gib(spec: InferenceServiceSpec, plan: Plan) -> float:
    """Bytes of the checkpoint as stored (what a replica downloads or reads), in GiB: the
    planned weights at the stored precision. Online fp8 of a bf16 checkpoint downloads the bf16
    weights: 70.6 B params -> 65.8 GiB planned at fp8, 131.5 GiB downloaded."""
    stored = catalog.checkpoint(spec.model.checkpoint_format, plan.quantization)
    ratio = (
        catalog.quant(stored.precision).bytes_per_param
        / catalog.quant(plan.quantization).bytes_per_param
    )
    return plan.weights_gib * ratio


def model_cache_size(spec: InferenceServiceSpec, plan: Plan) -> str | None:
    """sizeLimit and ephemeral-storage request of the download cache (emptyDir) of an hf://
    model: the checkpoint plus 10% and 2 GiB for tokenizer files and partial downloads; None for
    a pvc:// model or one read from the shared model cache, which download nothing."""
    if not spec.model.source.startswith("hf://") or spec.model.cache is not None:
        return None
    return f"{math.ceil(checkpoint_gib(spec, plan) * 1.1) + 2}Gi"


def cache_cold_start_seconds(spec: InferenceServiceSpec, plan: Plan) -> float:
    """From pod start to serving when the weights come from the shared model cache: the
    checkpoint read at `CACHE_READ_BYTES_PER_SECOND` plus the engine's warm-up. Llama-3.1-70B
    bf16: 131.5 GiB / 1 GiB/s + 180 s = 312 s (against 706 s from the hub). A group's nodes
    read their own pipeline stages' tensors at the same time (safetensors reads by tensor), so
    the group is ready after one node's share: Llama-3.1-405B bf16 on 2 nodes, 378 GiB each."""
    read = checkpoint_gib(spec, plan) / plan.nodes * 1024**3 / CACHE_READ_BYTES_PER_SECOND
    return round(read + WARMUP_SECONDS, 1)


def cold_start_seconds(spec: InferenceServiceSpec, plan: Plan) -> float:
    """The cold start the autoscaler plans with: the user's coldStartSeconds; unset, the read
    from the model cache plus warm-up when there is one (a group's: one node's share, as its
    nodes read at the same time, plus the ranks' rendezvous), else 120 s."""
    stated = spec.scaling.cold_start_seconds
    if stated is not None:
        return stated
    if spec.model.cache is not None:
        rendezvous = GROUP_RENDEZVOUS_SECONDS if plan.nodes > 1 else 0.0
        return cache_cold_start_seconds(spec, plan) + rendezvous
    return DEFAULT_COLD_START_SECONDS


def startup_budget_seconds(spec: InferenceServiceSpec, plan: Plan) -> float:
    """Seconds the startup probe allows before the kubelet restarts the container."""
    bandwidth = CACHE_READ_BYTES_PER_SECOND if spec.model.cache else LOAD_BYTES_PER_SECOND
    load = checkpoint_gib(spec, plan) * 1024**3 / bandwidth + WARMUP_SECONDS
    return max(STARTUP_FLOOR_SECONDS, 2 * cold_start_seconds(spec, plan), load)


def probes(spec: InferenceServiceSpec, plan: Plan) -> dict[str, Any]:
    """startupProbe, readinessProbe and livenessProbe for the worker container."""
    http = {"port": names.PORT_NAME}
    startup_failures = math.ceil(startup_budget_seconds(spec, plan) / PROBE_PERIOD_SECONDS)
    return {
        "startupProbe": {
            "httpGet": {**http, "path": contract.HEALTH_PATH},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": startup_failures,
        },
        "readinessProbe": {
            "httpGet": {**http, "path": contract.READY_PATH},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": READINESS_FAILURES,
        },
        "livenessProbe": {
            "httpGet": {**http, "path": contract.HEALTH_PATH},
            "periodSeconds": LIVENESS_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": LIVENESS_FAILURES,
        },
    }

"""The benchmark scenario: model, GPU, quantization, SLO, cold start, and the spec/plan/engine
profile derived from them.

The standard scenario serves Llama-3.1-70B in fp8 on two H100s per replica (the planner's choice
for that model and GPU) with a 1 s TTFT and 50 ms ITL objective. At that size the inter-token
objective binds (prefill interference from a few req/s per replica already costs ~40% of the
step time), so the batch-size knob matters, and one replica serves ~4 req/s, so the embedded day
and the Azure conversation trace at x6 need 10+ replicas at their peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.bench.clients import ClientModel
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.render import QUEUE_PER_SLOT
from tokenscale_contract.histogram_buckets import (
    INTER_TOKEN_LATENCY_BUCKETS,
    ITL_FAMILY,
    TIME_TO_FIRST_TOKEN_BUCKETS,
    TTFT_FAMILY,
    slo_buckets,
)
from tokenscale_sim.profile import EngineProfile, build_profile, perturbed

COLD_START_SIGMA = 0.35
# The drawn world's step-to-step variation of a GPU step time: lognormal multipliers with this
# sigma (about +/-10% for two thirds of the steps), mean 1, so the roofline stays the mean.
STEP_NOISE_SIGMA = 0.1
# In the drawn world the policy reads Prometheus: one scrape interval behind the tick.
SCRAPE_DELAY_S = 15.0
# The drawn world's clients (bench.clients): a chat user gives up after a minute without a first
# token (the OpenAI client's own timeout is 10 minutes; people leave sooner), 2% press stop
# mid-answer, and the gateway's queue is bounded as the operator renders it.
DRAWN_CLIENT_TIMEOUT_S = 60.0
DRAWN_CANCEL_SHARE = 0.02

HF_REPOS = {
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B-Instruct",
    "llama-3.1-405b": "meta-llama/Llama-3.1-405B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "qwen2.5-72b": "Qwen/Qwen2.5-72B-Instruct",
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.3",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-Instruct-v0.1",
}


@dataclass(frozen=True)
class Scenario:
    model: str = "llama-3.1-70b"
    gpu: str = "h100-80gb"
    quantization: str = "fp8"
    ttft_s: float = 1.0
    itl_s: float = 0.05
    percentile: float = 99.0
    cold_start_s: float = 120.0
    max_model_len: int = 16384
    min_replicas: int = 1
    max_replicas: int = 40
    tick_s: float = 15.0
    sample_s: float = 2.0
    batch_tuning: bool = True
    seed: int = 1
    # "known": the simulator is the planner's roofline. "drawn": per run (from the seed) the
    # hardware's decode and prefill speed are drawn within +/-25% of it and every pod's cold
    # start from a long tail around cold_start_s (lognormal, median cold_start_s, sigma 0.35:
    # p99 2.3x); every step's time varies around the roofline (STEP_NOISE_SIGMA); and the policy
    # reads signals as Prometheus gives them (vLLM's histograms, one scrape late; see
    # bench.metrics). The policy is told none of it.
    world: str = "known"
    # The latency buckets the engines export, read in the drawn world: "objective" (what the
    # operator renders, fine around the SLO) or "vllm" (vLLM's defaults, 25/50/75 ms).
    buckets: str = "objective"
    # Share of every prompt found in the prefix cache, for traces without Mooncake hash ids
    # (those use per-replica caches of their blocks); in every world.
    prefix_hit_rate: float = 0.0

    def spec(self, **scaling: Any) -> InferenceServiceSpec:
        base: dict[str, Any] = {
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "coldStartSeconds": self.cold_start_s,
            "batch": {"enabled": self.batch_tuning},
        }
        base.update(scaling)
        return InferenceServiceSpec.model_validate(
            {
                "model": {
                    "source": f"hf://{HF_REPOS.get(self.model, 'org/' + self.model)}",
                    "architecture": self.model,
                    "maxModelLen": self.max_model_len,
                },
                "quantization": {"method": self.quantization},
                "resources": {"gpu": self.gpu},
                "slo": {
                    "ttftSeconds": self.ttft_s,
                    "itlSeconds": self.itl_s,
                    "percentile": self.percentile,
                },
                "scaling": base,
            }
        )

    @cached_property
    def plan(self) -> Plan:
        result = plan(self.spec())
        if not isinstance(result, Plan):
            raise ValueError(f"scenario does not fit: {result.reason}")
        return result

    @cached_property
    def profile(self) -> EngineProfile:
        base = self.belief
        if self.world == "known":
            return base
        if self.world != "drawn":
            raise ValueError(f"world {self.world!r}: choose known or drawn")
        rng = np.random.default_rng([self.seed, 25])
        decode, prefill = rng.uniform(0.75, 1.25, 2)
        return perturbed(base, float(decode), float(prefill))

    @property
    def cold_start_sigma(self) -> float:
        return COLD_START_SIGMA if self.world == "drawn" else 0.0

    @property
    def step_noise_sigma(self) -> float:
        return STEP_NOISE_SIGMA if self.world == "drawn" else 0.0

    @property
    def clients(self) -> ClientModel:
        """The ideal client in the known world; timeouts, cancellations and 429s when drawn."""
        if self.world == "drawn":
            return ClientModel(
                timeout_s=DRAWN_CLIENT_TIMEOUT_S,
                cancel_share=DRAWN_CANCEL_SHARE,
                queue_per_slot=QUEUE_PER_SLOT,
                prefix_hit_rate=self.prefix_hit_rate,
            )
        return ClientModel(prefix_hit_rate=self.prefix_hit_rate)

    @property
    def signals(self) -> str:
        """How the policy reads the fleet: "exact" in the known world, "prometheus" when drawn."""
        return "prometheus" if self.world == "drawn" else "exact"

    @property
    def scrape_delay_s(self) -> float:
        return SCRAPE_DELAY_S if self.world == "drawn" else 0.0

    @property
    def histogram_buckets(self) -> dict[str, list[float]]:
        """The TTFT and ITL bounds the workers export: what the operator renders for the SLO,
        or vLLM's defaults."""
        if self.buckets == "vllm":
            return {
                TTFT_FAMILY: list(TIME_TO_FIRST_TOKEN_BUCKETS),
                ITL_FAMILY: list(INTER_TOKEN_LATENCY_BUCKETS),
            }
        if self.buckets != "objective":
            raise ValueError(f"buckets {self.buckets!r}: choose objective or vllm")
        return slo_buckets(self.ttft_s, self.itl_s)

    @cached_property
    def belief(self) -> EngineProfile:
        """The engine as the planner's roofline has it."""
        p = self.plan
        return build_profile(
            self.model,
            self.gpu,
            self.quantization,
            tensor_parallel_size=p.tensor_parallel,
            max_num_seqs=p.max_num_seqs,
            max_num_batched_tokens=p.max_num_batched_tokens,
            max_model_len=self.max_model_len,
        )

    def describe(self) -> dict[str, Any]:
        p = self.plan
        return {
            "model": self.model,
            "gpu": self.gpu,
            "quantization": p.quantization,
            "gpus_per_replica": p.gpus_per_replica,
            "slo_ttft_s": self.ttft_s,
            "slo_itl_s": self.itl_s,
            "slo_percentile": self.percentile,
            "cold_start_s": self.cold_start_s,
            "max_model_len": self.max_model_len,
            "max_num_seqs": p.max_num_seqs,
            "tick_s": self.tick_s,
            "seed": self.seed,
            "world": self.world,
            "histogram_buckets": self.buckets,
            "clients": {
                "timeout_s": self.clients.timeout_s,
                "cancel_share": self.clients.cancel_share,
                "queue_per_slot": self.clients.queue_per_slot,
                "prefix_hit_rate": self.prefix_hit_rate,
            },
            "engine": self.profile.name,
        }

"""The benchmark scenario: model, GPU, quantization, SLO, cold start, and the spec/plan/engine
profile derived from them.

The standard scenario serves Llama-3.1-70B in fp8 on two H100s per replica (the planner's choice
for that model and GPU) with a 1 s TTFT and 50 ms ITL objective. At that size the inter-token
objective binds (prefill interference from a few req/s per replica already costs ~40% of the
step time), so the batch-size knob matters, and one replica serves ~4 req/s, so the embedded day
and the Azure conversation trace at x6 need 10+ replicas at their peak.

The multi-node scenario (`SCENARIOS["multinode-405b"]`) serves Llama-3.1-405B in bf16, which no
single 8-GPU node holds: the planner's multi-node plan (`capacity.plan(spec, multi_node=True)`)
makes a replica a group of 2 nodes x 8 H100 (tensor parallel 8 within a node, pipeline parallel
2 across them), 16 GPUs that GPU-hours count for the whole life of the group. A group serves
once its slowest node has read its half of the checkpoint and warmed up and the ranks have met
(`group_cold_start`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.bench.clients import ClientModel
from tokenscale.domain.capacity import Infeasible, Plan, plan
from tokenscale.domain.probes import GROUP_RENDEZVOUS_SECONDS, cache_cold_start_seconds
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
# A multi-node group's ranks meet after every node is up: the domain's figure, which the
# operator's planned cold start adds too.
GROUP_RENDEZVOUS_S = GROUP_RENDEZVOUS_SECONDS

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
    # spec.slo.ttftSecondsPer1kPromptTokens: a length-aware TTFT objective (0: none).
    ttft_per_1k_s: float = 0.0
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
    # Plan with `capacity.plan(spec, multi_node=True)`: a replica may be a group of whole nodes
    # when no single node holds the model. `cold_start_s` is then one node's (its shard read and
    # its warm-up), and a group adds `rendezvous_s` after its slowest node (`group_cold_start`).
    multi_node: bool = False
    rendezvous_s: float = GROUP_RENDEZVOUS_S
    # spec.engine.maxNumBatchedTokens, the per-step token budget; None: the planner's choice.
    max_num_batched_tokens: int | None = None
    # How the balancer picks a replica: "least-request" (Envoy's, the lighter of two) or
    # "least-prefill" (the replica with the fewest prompt tokens still to prefill).
    routing: str = "least-request"

    def ttft_objectives(self, prompt: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Each request's TTFT objective from its prompt length (domain.ttft_objective)."""
        return self.ttft_s + self.ttft_per_1k_s * np.asarray(prompt, dtype=np.float64) / 1000.0

    def spec(self, **scaling: Any) -> InferenceServiceSpec:
        """The service as the policy is told it: coldStartSeconds is a replica's (a group's)."""
        return self._spec(self.replica_cold_start_s, **scaling)

    def _spec(self, cold_start_s: float, **scaling: Any) -> InferenceServiceSpec:
        base: dict[str, Any] = {
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "coldStartSeconds": cold_start_s,
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
                    "ttftSecondsPer1kPromptTokens": self.ttft_per_1k_s,
                    "itlSeconds": self.itl_s,
                    "percentile": self.percentile,
                },
                "scaling": base,
                **self._engine(),
            }
        )

    def _engine(self) -> dict[str, Any]:
        if self.max_num_batched_tokens is None:
            return {}
        return {"engine": {"maxNumBatchedTokens": self.max_num_batched_tokens}}

    @cached_property
    def _fit(self) -> Plan | Infeasible:
        # The plan reads no coldStartSeconds; planning on the node's keeps the group's (which
        # needs the plan's node count) out of a loop.
        return plan(self._spec(self.cold_start_s), multi_node=self.multi_node)

    @cached_property
    def plan(self) -> Plan:
        result = self._fit
        if not isinstance(result, Plan):
            raise ValueError(f"scenario does not fit: {result.reason}")
        return result

    @property
    def nodes(self) -> int:
        """Nodes per replica: 1, or the group's size when the plan spans nodes (1 for a
        scenario that does not fit, whose spec still states what was asked)."""
        return self._fit.nodes if isinstance(self._fit, Plan) else 1

    @property
    def group_rendezvous_s(self) -> float:
        """What a replica waits after its slowest node: the ranks' rendezvous, for groups only."""
        return self.rendezvous_s if self.nodes > 1 else 0.0

    @property
    def replica_cold_start_s(self) -> float:
        """A replica's cold start with every node at `cold_start_s` (the known world): the
        group's, what the policy is told (spec.scaling.coldStartSeconds)."""
        return group_cold_start([self.cold_start_s] * self.nodes, self.group_rendezvous_s)

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
        """The engine as the planner's roofline has it; a group's pipeline as `pipelined` has
        it (the stage boundaries' transfers and latency included)."""
        p = self.plan
        base = build_profile(
            self.model,
            self.gpu,
            self.quantization,
            tensor_parallel_size=p.tensor_parallel,
            max_num_seqs=p.max_num_seqs,
            max_num_batched_tokens=p.max_num_batched_tokens,
            max_model_len=self.max_model_len,
            nodes=p.nodes,
        )
        return pipelined(base, p.pipeline_parallel)

    def describe(self) -> dict[str, Any]:
        p = self.plan
        return {
            "model": self.model,
            "gpu": self.gpu,
            "quantization": p.quantization,
            "gpus_per_replica": p.gpus_per_replica,
            "tensor_parallel": p.tensor_parallel,
            "nodes_per_replica": p.nodes,
            "slo_ttft_s": self.ttft_s,
            "slo_ttft_per_1k_prompt_tokens_s": self.ttft_per_1k_s,
            "slo_itl_s": self.itl_s,
            "slo_percentile": self.percentile,
            "cold_start_s": self.cold_start_s,
            "replica_cold_start_s": self.replica_cold_start_s,
            "max_model_len": self.max_model_len,
            "max_num_seqs": p.max_num_seqs,
            "max_num_batched_tokens": p.max_num_batched_tokens,
            "max_num_batched_tokens_source": p.max_num_batched_tokens_source,
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


def group_cold_start(node_loads: Sequence[float], rendezvous_s: float) -> float:
    """From a group's creation to serving: every node loads its shard and warms up in parallel,
    the ranks meet once the slowest is done, so the slowest node's time plus the rendezvous
    (one node: its own time, `rendezvous_s` 0). LeaderWorkerSet creates the group's pods
    together (startupPolicy LeaderCreated) and the leader is ready only with every rank."""
    return max(node_loads) + rendezvous_s


def pipelined(profile: EngineProfile, stages: int) -> EngineProfile:
    """A `stages`-node pipeline as one engine stepping in rounds.

    The simulator's engine keeps one batch in flight; vLLM's pipeline keeps one per stage, so
    the running sequences decode in `stages` micro-batches, each stage busy with one while the
    next works on another, and a sequence's next token comes one traversal of its own
    micro-batch later. One round (every running sequence one token) therefore takes the
    traversal of 1/stages of the batch: the weights and the fixed cost (the launch, the
    all-reduces, the boundaries' latency) once, the per-token terms (KV reads, FLOPs, attention,
    the boundary transfers, the scheduler's per-sequence cost) for 1/stages of the tokens, and
    each micro-batch has its own token budget. That is the planner's pipeline
    (`ServiceModel.decode_s`: the ITL of `batch / stages` sequences; a prefill costs each stage
    its share) in the simulator's terms. It gives a lone prompt's prefill at 1/stages of its
    real traversal (405B on 2 nodes: 0.11 s instead of 0.22 s for 1155 tokens, 0.39 s instead
    of 0.78 s for 4100, against a 2.5 s TTFT objective): throughput and ITL are the
    pipeline's, an idle replica's TTFT is optimistic by that much.

    `tokenscale_sim.engine` modelling micro-batches itself would lift that; until then the
    benchmark runs a group this way."""
    if stages <= 1:
        return profile
    return replace(
        profile,
        name=f"{profile.name} ({stages} micro-batches in flight)",
        max_num_batched_tokens=profile.max_num_batched_tokens * stages,
        per_seq_s=profile.per_seq_s / stages,
        kv_read_s_per_token=profile.kv_read_s_per_token / stages,
        flop_s_per_token=profile.flop_s_per_token / stages,
        attn_s_per_pair=profile.attn_s_per_pair / stages,
        transfer_s_per_token=profile.transfer_s_per_token / stages,
    )


def node_cold_start_s(scenario: Scenario) -> float:
    """One node of a replica from creation to warm, reading from the shared model cache: the
    domain's `probes.cache_cold_start_seconds`, which reads one node's share of the checkpoint
    (every node reads its own stages' tensors at the same time) at 1 GiB/s and adds the
    engine's warm-up. Llama-3.1-405B bf16 on 2 nodes: 756 GiB / 2 = 378 GiB + 180 s = 558 s.
    The rendezvous after the slowest node is not in it (`group_cold_start`)."""
    return cache_cold_start_seconds(scenario.spec(), scenario.plan)


def _multinode_405b() -> Scenario:
    """Llama-3.1-405B bf16 on 2 nodes x 8 H100 per replica. Its objectives keep the standard
    scenario's headroom over one request on an idle replica (70B fp8 on 2 H100: 18.7 ms a token
    against 50 ms, 84 ms of a 1155-token prefill against 1 s): 41 ms a token against 100 ms and
    217 ms of prefill against 2.5 s. Each node's cold start is its shard's read from the model
    cache plus warm-up (`node_cold_start_s`), the group's 30 s later."""
    base = Scenario(
        model="llama-3.1-405b",
        quantization="none",
        ttft_s=2.5,
        itl_s=0.1,
        multi_node=True,
    )
    return replace(base, cold_start_s=node_cold_start_s(base))


# Named scenarios (`tokenscale bench --scenario NAME`); the other options override their fields.
SCENARIOS = {"standard": Scenario(), "multinode-405b": _multinode_405b()}

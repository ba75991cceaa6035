"""Per-replica service model for the autoscaler: how long a request occupies a batch slot and how
many requests per second one replica serves at a given concurrency cap.

It extends the roofline step model (`perf.py`, the roofline the simulator runs too) with prefill
interference: with chunked prefill,
every admitted prompt's prefill runs inside the steps the running sequences decode in, so decode
steps slow down by the share of time spent on prefill. With per-replica throughput X req/s and
prefill time P per request, that share is X·P and

    ITL ≈ d(batch) / (1 - X·P)            S = P + out · ITL            X = cap / S   (Little)

Worked number (Llama-3.1-70B fp8 on 2xH100, 1155-token prompts, 211 output tokens, cap 36):
P = 84 ms, d(36) = 22 ms; the fixed point gives X = 4.7 req/s, X·P = 0.40, ITL = 36 ms,
S = 7.7 s. The learned `service_factor` (observed S over modeled S) corrects the model online.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.capacity import Plan, resolve_arch
from tokenscale.domain.perf import StepModel, largest_where, step_model
from tokenscale.domain.scaling_constants import CONSTANTS
from tokenscale_contract import catalog

# Prefill can never take more than this share of a replica's time in the model (keeps 1/(1-XP)
# finite when the observed load is beyond what the model thinks possible).


@dataclass(frozen=True)
class ServiceModel:
    """Modeled per-request timings of one replica for a given mean prompt and output length."""

    steps: StepModel
    prompt_tokens: float
    output_tokens: float
    # Pipeline stages (nodes) of one replica: vLLM keeps one batch in flight per stage, so the
    # running sequences decode in `stages` batches, each stage busy with one of them at a time,
    # and a prompt's prefill occupies each stage for its share of the prefill.
    stages: int = 1

    @property
    def prefill_s(self) -> float:
        """One prompt's prefill: 1155 tokens of 70B fp8 on TP2, compute-bound, = 84 ms."""
        return self.steps.prefill_s(int(self.prompt_tokens))

    @property
    def mean_context(self) -> float:
        return self.prompt_tokens + self.output_tokens / 2

    def decode_s(self, batch: float) -> float:
        per_stage = batch / self.stages
        return self.steps.decode_itl(max(1, round(per_stage)), self.mean_context)

    def itl(self, batch: float, rate: float) -> float:
        """ITL at `batch` running sequences with `rate` req/s of prefills on this replica."""
        share = min(CONSTANTS.max_prefill_share, rate * self.prefill_s / self.stages)
        return self.decode_s(batch) / (1.0 - share)

    def service_s(self, batch: float, rate: float) -> float:
        """Time a request holds a slot: its prefill plus its decode at the interfered ITL."""
        return self.prefill_s + max(0.0, self.output_tokens - 1) * self.itl(batch, rate)

    def throughput(self, cap: int, factor: float = 1.0) -> float:
        """Requests/s one replica completes with `cap` slots full, by damped fixed point."""
        x = cap / max(1e-6, factor * self.service_s(cap, 0.0))
        for _ in range(CONSTANTS.fixed_point_rounds):
            x = 0.5 * x + 0.5 * cap / max(1e-6, factor * self.service_s(cap, x))
        return x

    def itl_at_cap(self, cap: int, factor: float = 1.0) -> float:
        return self.itl(cap, self.throughput(cap, factor))

    def largest_cap_within(self, itl_s: float, floor: int, ceiling: int, factor: float) -> int:
        """Largest cap in [floor, ceiling] whose modeled ITL stays within `itl_s` (bisection:
        ITL grows with the cap); `floor` when even that is too slow."""
        if self.itl_at_cap(floor, factor) > itl_s:
            return floor
        return largest_where(lambda cap: self.itl_at_cap(cap, factor) <= itl_s, floor, ceiling)


def service_model(
    spec: InferenceServiceSpec, plan: Plan, prompt: float | None, output: float | None
) -> ServiceModel:
    """The model for observed token means, falling back to half the expected sequence each."""
    arch = resolve_arch(spec)
    steps = step_model(
        arch,
        catalog.gpu(plan.gpu),
        catalog.quant(plan.quantization),
        plan.tensor_parallel,
        plan.nodes,
    )
    half = spec.engine.expected_sequence_tokens / 2
    return ServiceModel(
        steps=steps,
        prompt_tokens=prompt if prompt and prompt > 0 else half,
        output_tokens=output if output and output > 0 else half,
        stages=plan.nodes,
    )

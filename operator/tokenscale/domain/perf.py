"""The planner's and the autoscaler's view of one engine step: the roofline of
`tokenscale_contract.roofline`, the same coefficients the simulator runs, so the benchmark's known
world is exactly this belief.

Used to plan batch caps (the largest decode batch within the ITL objective) and to seed the
autoscaler's per-replica capacity before observations arrive (`scaling_model.py`).

Worked number (Llama-3.1-8B bf16, one H100, 10 sequences at ~1000 tokens of context): weights
16.06 GB and KV 10 x 1000 x 128 KiB = 1.31 GB read at 3350 GB/s x 0.78 -> 6.65 ms, + 0.8 ms
overhead + 10 x 8 us per sequence = 7.5 ms per output token, against ~7.6 ms measured with vLLM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenscale_contract.catalog import GpuKind, ModelArch, QuantFormat
from tokenscale_contract.roofline import Roofline, roofline


@dataclass(frozen=True)
class StepModel:
    """Latency of one engine step for one replica (all its tensor-parallel GPUs together)."""

    roofline: Roofline

    @property
    def fixed_s(self) -> float:
        return self.roofline.fixed_s

    def prefill_s(self, prompt: int) -> float:
        """What one prompt's prefill adds to a step: its own step less the fixed overhead."""
        return self.roofline.prefill_step(max(1, prompt)) - self.roofline.fixed_s

    def decode_itl(self, batch: int, mean_context: float) -> float:
        """Inter-token latency when `batch` sequences decode together."""
        return self.roofline.decode_step(batch, mean_context)

    def largest_batch_within(self, itl_seconds: float, mean_context: float, ceiling: int) -> int:
        """Largest decode batch (<= ceiling) whose ITL stays within `itl_seconds`; 0 if even one
        sequence is too slow. ITL grows monotonically with batch, so bisect."""
        if self.decode_itl(1, mean_context) > itl_seconds:
            return 0
        return largest_where(lambda b: self.decode_itl(b, mean_context) <= itl_seconds, 1, ceiling)

    def mixed_step(self, chunk: int, batch: int, mean_context: float) -> float:
        """One step that decodes `batch` sequences and prefills a `chunk`-token prompt chunk
        beside them (chunked prefill): every decoding sequence's token waits for it."""
        decode_kv = batch * mean_context
        return self.roofline.step_seconds(
            batch + chunk,
            batch + (1 if chunk else 0),
            decode_kv + chunk,
            decode_kv + chunk * (chunk + 1) / 2,
        )

    def largest_chunk_within(
        self, itl_seconds: float, batch: int, mean_context: float, ceiling: int
    ) -> int:
        """The per-step token budget the ITL objective allows: the largest prefill chunk
        (<= ceiling) whose step beside `batch` decoding sequences stays within `itl_seconds`;
        0 when the decode step alone does not (Sarathi-Serve's stall-free budget). 70B fp8 on
        2 x H100, 119 sequences of 1024 tokens, 50 ms -> 531 tokens."""
        if self.mixed_step(1, batch, mean_context) > itl_seconds:
            return 0
        return largest_where(
            lambda n: self.mixed_step(n, batch, mean_context) <= itl_seconds, 1, ceiling
        )


def largest_where(holds: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, max(low, high)] for which `holds` is true, given that it holds at
    `low` and, once false, stays false for every larger n (ITL grows with the batch): bisect."""
    high = max(low, high)
    while low < high:
        mid = (low + high + 1) // 2
        if holds(mid):
            low = mid
        else:
            high = mid - 1
    return low


def step_model(
    arch: ModelArch, gpu: GpuKind, quant: QuantFormat, tensor_parallel: int, nodes: int = 1
) -> StepModel:
    """The step model for one replica of `arch` on `tensor_parallel` GPUs of `gpu` per node,
    over `nodes` pipeline stages."""
    return StepModel(roofline(arch, gpu, quant, tensor_parallel, nodes))

"""The per-step token budget (vLLM's --max-num-batched-tokens) a plan runs with, and why.

With chunked prefill every engine step carries the running sequences' decode tokens plus up to
`budget - batch` tokens of prompt chunks. A step's time grows with the chunk, so the budget bounds
the inter-token latency every decoding request sees while a long prompt is being prefilled
(Sarathi-Serve's stall-free batching). vLLM's online default (8192 tokens on GPUs of 70 GiB or
more, 2048 below) ignores the ITL objective: on Llama-3.1-70B fp8 on 2 x H100 a step carrying a
full 8192-token chunk beside 119 decoding requests takes 647 ms, thirteen times a 50 ms objective.

The default here is therefore the largest chunk whose step, beside a full cap of decoding
requests, stays within the ITL objective (`StepModel.largest_chunk_within`): 531 tokens for that
plan. What it costs is a prompt prefilled in ceil(prompt / budget) steps instead of a few: prefill
throughput hardly changes (the step is compute-bound either way), but every step adds the weight
read, which is what moves the longest prompts an idle replica serves within the TTFT objective
(`slo_reach`, which reads this budget). The plan keeps vLLM's default where a full chunk of it
already fits the objective or where no chunk does (the decode step alone misses; the plan says
so), and a spec value always wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# vLLM refuses a budget below max_num_seqs (SchedulerConfig). Below a few hundred tokens a step's
# fixed cost (reading every weight once) dominates its prefill work: a 4000-token prompt would
# take 16+ steps of roughly a decode step's cost each. 256 is the floor Sarathi-Serve's budgets
# stay above.
MIN_BUDGET_TOKENS = 256

SOURCE_SPEC = "spec"
SOURCE_ITL = "itlObjective"
SOURCE_DEFAULT = "vllmDefault"
SOURCE_WHOLE_PROMPT = "chunkedPrefillOff"


@dataclass(frozen=True)
class TokenBudget:
    tokens: int
    # One of the SOURCE_* names: which rule chose `tokens` (status.plan.maxNumBatchedTokensSource).
    source: str
    reason: str


def vllm_default(gpu_memory_gib: float) -> int:
    """vLLM's online-serving default with chunked prefill: a larger chunk on large-memory GPUs."""
    return 8192 if gpu_memory_gib >= 70 else 2048


def choose(
    *,
    spec_tokens: int | None,
    chunked_prefill: bool,
    max_model_len: int,
    gpu_memory_gib: float,
    itl_budget: int,
    max_num_seqs: int,
    step_seconds: Callable[[int], float],
    itl_seconds: float,
    batch: int,
) -> TokenBudget:
    """The budget the plan renders. `itl_budget` is the largest chunk within the ITL objective
    beside `batch` decoding requests (0: none is); `step_seconds(n)` that step's time with an
    n-token chunk."""
    objective_ms = f"{itl_seconds * 1000:.0f} ms"
    if spec_tokens:
        return TokenBudget(spec_tokens, SOURCE_SPEC, "set by spec.engine.maxNumBatchedTokens")
    if not chunked_prefill:
        # vLLM requires a whole prompt per step without chunked prefill.
        return TokenBudget(
            max_model_len, SOURCE_WHOLE_PROMPT, "chunked prefill is off: one whole prompt a step"
        )
    default = vllm_default(gpu_memory_gib)
    if itl_budget <= 0:
        return TokenBudget(
            default,
            SOURCE_DEFAULT,
            f"vLLM's default: no prompt chunk fits the {objective_ms} ITL objective beside "
            f"{batch} decoding requests",
        )
    if itl_budget >= default:
        return TokenBudget(
            default,
            SOURCE_DEFAULT,
            f"vLLM's default: a full {default}-token chunk beside {batch} decoding requests "
            f"stays within the {objective_ms} ITL objective",
        )
    floor = max(max_num_seqs, MIN_BUDGET_TOKENS)
    if itl_budget < floor:
        return TokenBudget(
            floor,
            SOURCE_ITL,
            f"the smallest budget vLLM and prefill efficiency allow ({floor} tokens: "
            f"max(maxNumSeqs, {MIN_BUDGET_TOKENS})); its step beside {batch} decoding requests "
            f"takes {step_seconds(floor) * 1000:.0f} ms, over the {objective_ms} ITL objective",
        )
    return TokenBudget(
        itl_budget,
        SOURCE_ITL,
        f"the largest prompt chunk whose step beside {batch} decoding requests stays within "
        f"the {objective_ms} ITL objective ({step_seconds(itl_budget) * 1000:.0f} ms; vLLM's "
        f"default {default} would take {step_seconds(default) * 1000:.0f} ms)",
    )

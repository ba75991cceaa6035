"""Which prompts the TTFT objective can be met for at all: those an idle replica prefills within
it. A longer prompt misses the objective however many replicas run, so the share of such
requests is a property of the objective and the traffic, not of the autoscaler; when it alone
exceeds what the SLO percentile tolerates (1% at p99), the objective cannot be attained, and the
SLOFeasible condition says so with the numbers.

Prefill on an idle replica is the prompt's chunks of at most `max_num_batched_tokens`, chunk i
computing n_i tokens on c_i already in the cache: step(n_i, 1, c_i + n_i, n_i (c_i + (n_i + 1)/2))
in the roofline the planner and the simulator share, summed (the benchmark's feasibility mask,
bench/feasible.py, is the same sum over the simulator's profile).

Worked numbers (Llama-3.1-70B fp8 on 2 x H100, TTFT 1 s): at the plan's budget of 531 tokens
(the ITL objective's, domain/token_budget.py) prompts up to 11 973 tokens prefill within 1 s and
a 16 000-token prompt takes 1.39 s; at vLLM's 8192, 12 393 tokens and 1.33 s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.capacity import Plan, resolve_arch
from tokenscale.domain.perf import largest_where
from tokenscale.domain.signals import Buckets
from tokenscale.domain.status import Condition
from tokenscale.domain.ttft_objective import ttft_objective
from tokenscale_contract import catalog
from tokenscale_contract.roofline import Roofline, roofline


class StepTimes(Protocol):
    """One engine step's time: the roofline here, the simulator's profile in the bench."""

    def step_seconds(self, tokens: int, seqs: int, kv_read: float, attn_pairs: float) -> float: ...


def idle_prefill_s(model: StepTimes, prompt: int, budget: int) -> float:
    """Seconds an idle replica takes from admission to the first token of `prompt` tokens."""
    total, cached = 0.0, 0
    while cached < prompt:
        n = min(budget, prompt - cached)
        total += model.step_seconds(n, 1, cached + n, n * (cached + (n + 1) / 2))
        cached += n
    return total


def _roofline(spec: InferenceServiceSpec, plan: Plan) -> Roofline:
    arch = resolve_arch(spec)
    gpu, quant = catalog.gpu(plan.gpu), catalog.quant(plan.quantization)
    return roofline(arch, gpu, quant, plan.tensor_parallel, plan.nodes)


def _max_prompt(spec: InferenceServiceSpec) -> int:
    return max(1, spec.model.max_model_len)


def longest_prompt_within(
    spec: InferenceServiceSpec, plan: Plan, model: Roofline | None = None
) -> int:
    """The longest prompt (up to maxModelLen) an idle replica prefills within its TTFT
    objective; 0 when not even one token. `model`: the plan's roofline, when already built."""
    slo = spec.slo
    return longest_within(
        model or _roofline(spec, plan),
        plan.max_num_batched_tokens,
        slo.ttft_seconds,
        slo.ttft_seconds_per_1k_prompt_tokens,
        _max_prompt(spec),
    )


# Every autoscale tick asks for every service; the answer depends on these few numbers only (a
# 128k-token context bisects over 16 chunks 17 times). Prefill time per token grows with the
# prompt (attention), so a prompt's time minus its allowance only grows: one crossing, bisected.
# The bench's feasibility mask asks the same over the simulator's profile.
@functools.lru_cache(maxsize=1024)
def longest_within(model: StepTimes, budget: int, ttft: float, per_1k: float, top: int) -> int:
    """The longest prompt (<= top) `model` prefills idle within `ttft` + `per_1k` per 1000
    prompt tokens, in chunks of `budget`; 0 when not even one token. `model` is hashable."""

    def within(p: int) -> bool:
        return idle_prefill_s(model, p, budget) <= ttft + per_1k * p / 1000.0

    if not within(1):
        return 0
    return largest_where(within, 1, top)


def share_above(buckets: Buckets, limit: float) -> float | None:
    """The share of requests whose value exceeds `limit`, from a cumulative histogram's
    (upper bound, rate) buckets, linear within the bucket that holds `limit` (as
    histogram_quantile assumes); None without traffic."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    below, low_bound, low_count = 0.0, 0.0, 0.0
    for bound, count in buckets:
        if bound >= limit:
            if bound == float("inf"):
                below = low_count
            else:
                width = bound - low_bound
                part = (limit - low_bound) / width if width > 0 else 1.0
                below = low_count + (count - low_count) * part
            break
        low_bound, low_count = bound, count
    else:
        below = total
    return max(0.0, min(1.0, 1.0 - below / total))


@dataclass(frozen=True)
class SloReach:
    """What the TTFT objective allows, for this plan and this traffic."""

    longest_prompt: int  # the longest prompt an idle replica prefills within the objective
    max_prompt: int  # maxModelLen: no longer prompt is admitted
    prefill_beyond_s: float  # idle prefill of one token more than `longest_prompt`
    ttft_s: float  # the objective of a prompt one token longer than `longest_prompt`
    tolerated: float  # the share of misses the SLO percentile allows (0.01 at p99)
    share_out_of_reach: float | None  # of the requests in the window; None without traffic

    @property
    def every_prompt(self) -> bool:
        return self.longest_prompt >= self.max_prompt

    @property
    def attainable(self) -> bool:
        """False when the requests no replica count can serve in time alone exceed the misses
        the percentile tolerates."""
        share = self.share_out_of_reach
        return self.every_prompt or share is None or share <= self.tolerated


def reach(spec: InferenceServiceSpec, plan: Plan, prompt_buckets: Buckets) -> SloReach:
    """The SLOFeasible facts: the prompt length beyond which the objective is out of reach, the
    prefill time there, and the share of the window's requests beyond it."""
    model, budget, top = _roofline(spec, plan), plan.max_num_batched_tokens, _max_prompt(spec)
    longest = longest_prompt_within(spec, plan, model)
    beyond = min(longest + 1, top)
    prefill = idle_prefill_s(model, beyond, budget)
    share = None if longest >= top else share_above(prompt_buckets, longest)
    return SloReach(
        longest_prompt=longest,
        max_prompt=top,
        prefill_beyond_s=prefill,
        ttft_s=ttft_objective(spec.slo, beyond),
        tolerated=1.0 - spec.slo.percentile / 100.0,
        share_out_of_reach=share,
    )


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def condition(found: SloReach, percentile: float) -> tuple[Condition, dict[str, object]]:
    """SLOFeasible: the template and its fields."""
    common: dict[str, object] = {
        "longest": found.longest_prompt,
        "prefill": f"{found.prefill_beyond_s:.2f}",
        "ttft": f"{found.ttft_s:.3g}",
        "tolerated": _percent(found.tolerated),
        "pct": f"{percentile:g}",
    }
    if found.every_prompt:
        return Condition.SLO_EVERY_PROMPT, {"max_prompt": found.max_prompt, "ttft": common["ttft"]}
    share = found.share_out_of_reach
    if found.attainable:
        observed = (
            "no traffic in the window to measure how many requests are that long"
            if share is None
            else f"{_percent(share)} of the requests in the window are that long"
        )
        return Condition.SLO_WITHIN_TOLERANCE, {**common, "observed": observed}
    return Condition.SLO_OUT_OF_REACH, {**common, "share": _percent(share or 0.0)}

"""The TTFT objective of a prompt: `slo.ttftSeconds`, plus `slo.ttftSecondsPer1kPromptTokens`
for every thousand prompt tokens when the service states a length-aware objective (as
long-context services do: a 12 000-token prompt cannot start as soon as a 100-token one).

The engines' TTFT histogram does not say which prompt each first token belonged to, so the
autoscaler compares the window's TTFT percentile with the objective of the prompt length at the
same percentile (vLLM's request_prompt_tokens histogram): the slowest first tokens are mostly
the longest prompts'. That is lenient when a queue, not the prompts, makes the tail (short
prompts waiting then get the long ones' allowance); the queue rules in `decide()` act on the
queue itself. The benchmark scores each request against its own objective.

Prompts out of reach (an idle replica prefills them past their objective: domain.slo_reach) miss
however many replicas run. While their share is within what the percentile tolerates (1% at
p99) the objective stays attainable over every request, and is read as the user stated it. Past
that no replica count attains it (SLOFeasible=False), and chasing it only adds GPUs: the TTFT
percentile is then read over the requests in reach. Every request out of reach misses, so with a
share f of them, the p-th percentile of the requests in reach meets the objective exactly when
the (p x (1 - f))-th of all requests does: p95 with 30% out of reach is the 66.5th percentile of
the whole histogram. SLOMet then says which requests it speaks of.
"""

from __future__ import annotations

from tokenscale.api.v1alpha1 import SloSpec


def ttft_objective(slo: SloSpec, prompt_tokens: float | None) -> float:
    """Seconds to the first token for a prompt of `prompt_tokens` (None: unknown, the base):
    1 s + 0.1 s per 1000 tokens -> 2.2 s for 12 000 tokens."""
    allowance = slo.ttft_seconds_per_1k_prompt_tokens
    if not allowance or prompt_tokens is None:
        return slo.ttft_seconds
    return slo.ttft_seconds + allowance * max(0.0, prompt_tokens) / 1000.0


def in_reach_percentile(percentile: float, out_of_reach_share: float | None) -> float:
    """The percentile of all requests to hold to the objective: `percentile` itself while the
    share out of reach is within what it tolerates (p99, 0.5% out of reach: 99), else the one
    that is `percentile` of the requests in reach (p95, 30% out of reach: 66.5)."""
    share = min(1.0, max(0.0, out_of_reach_share or 0.0))
    if share <= 1.0 - percentile / 100.0:
        return percentile
    return percentile * (1.0 - share)

"""Which requests any number of replicas could serve within the objective: those an idle replica
meets on its own. A request whose prompt takes longer than the TTFT objective to prefill on an
empty engine, or whose decode alone is slower than the ITL objective, is missed whatever a policy
does; attainment over the feasible requests separates the policy's misses from physics'.

Both figures are the engine model's own step times for a lone request (no step noise), in closed
form so that a 100 000-request trace costs one pass:

- TTFT: the prompt's chunks of at most `max_num_batched_tokens`, chunk i computing n_i tokens on
  c_i already cached: step(n_i, 1, c_i + n_i, n_i (c_i + (n_i + 1) / 2)), summed.
- mean ITL: decode step k = 1 .. output - 1 reads context x = prompt + k, so it takes
  fixed + per_seq + max(weights + kv x, flops + attn x); the mean of a maximum of two affine
  functions over consecutive integers is two arithmetic series either side of their crossing.

Worked numbers (the standard scenario, Llama-3.1-70B fp8 on 2 x H100, the plan's budget of 531
tokens): a prompt of 2048 tokens prefills in 0.16 s on an idle replica (0.15 s at vLLM's 8192);
the longest prompt prefilled within the 1 s objective is 11 973 tokens (12 393 at 8192); a lone
decode at 1000 tokens of context takes 18.7 ms per token, well inside 50 ms. Tests check the
closed forms against the engine model step by step.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from tokenscale.bench.traces import Trace
from tokenscale.domain.slo_reach import idle_prefill_s, longest_within
from tokenscale_sim.profile import EngineProfile


def idle_ttft(profile: EngineProfile, prompt: int) -> float:
    """Seconds from arrival to the first token for `prompt` tokens on an empty engine: the
    operator's own sum (`domain.slo_reach`) over the simulator's step times."""
    return idle_prefill_s(profile, prompt, profile.max_num_batched_tokens)


def _affine_sum(a: float, b: float, lo: int, hi: int) -> float:
    """sum of a + b x for integer x in [lo, hi]; 0 for an empty range."""
    if hi < lo:
        return 0.0
    n = hi - lo + 1
    return a * n + b * (lo + hi) * n / 2


def idle_mean_itl(profile: EngineProfile, prompt: int, output: int) -> float:
    """vLLM's time per output token for a lone request: its decode steps' mean duration."""
    if output < 2:
        return 0.0
    p = profile
    base = p.fixed_s + p.per_seq_s
    a_mem, b_mem = base + p.weight_s, p.kv_read_s_per_token
    a_cmp, b_cmp = base + p.flop_s_per_token, p.attn_s_per_pair
    lo, hi = prompt + 1, prompt + output - 1
    # Memory wins for x < crossing when compute grows faster per token, and the other way round.
    if b_cmp == b_mem:
        total = _affine_sum(max(a_mem, a_cmp), b_mem, lo, hi)
    else:
        crossing = (a_mem - a_cmp) / (b_cmp - b_mem)
        split = min(hi, max(lo - 1, math.floor(crossing)))
        first, second = ((a_mem, b_mem), (a_cmp, b_cmp))
        if b_cmp < b_mem:
            first, second = second, first
        total = _affine_sum(*first, lo, split) + _affine_sum(*second, split + 1, hi)
    return total * p.time_scale / (output - 1)


def longest_feasible_prompt(profile: EngineProfile, ttft_s: float, per_1k_s: float = 0.0) -> int:
    """The longest prompt an idle replica prefills within its objective, `ttft_s` plus
    `per_1k_s` per 1000 prompt tokens; 0 if not even one token. Prefill time per token grows
    with the prompt, so its time minus the allowance crosses the base once: bisect."""
    budget, top = profile.max_num_batched_tokens, profile.max_model_len - 1
    return longest_within(profile, budget, ttft_s, per_1k_s, top)


def feasible(
    trace: Trace, profile: EngineProfile, ttft_s: float, itl_s: float, per_1k_s: float = 0.0
) -> npt.NDArray[np.bool_]:
    """Per request: would an idle replica meet both objectives for it?"""
    longest = longest_feasible_prompt(profile, ttft_s, per_1k_s)
    ok = trace.prompt <= longest
    pairs = np.stack([trace.prompt, trace.output], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    itl_ok = np.array([idle_mean_itl(profile, int(p), int(o)) <= itl_s for p, o in unique])
    return np.asarray(ok & itl_ok[inverse.reshape(-1)], dtype=bool)

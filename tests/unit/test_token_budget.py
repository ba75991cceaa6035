"""token_budget.choose: which per-step token budget a plan renders, and the words for why."""

from __future__ import annotations

from tokenscale.domain import token_budget
from tokenscale.domain.token_budget import MIN_BUDGET_TOKENS, choose


def linear_step(tokens: int) -> float:
    """A step of 10 ms plus 0.1 ms per chunk token: 50 ms at 400 tokens."""
    return 0.010 + tokens * 0.0001


def chosen(**overrides: object) -> token_budget.TokenBudget:
    args: dict[str, object] = {
        "spec_tokens": None,
        "chunked_prefill": True,
        "max_model_len": 8192,
        "gpu_memory_gib": 80,
        "itl_budget": 400,
        "max_num_seqs": 128,
        "step_seconds": linear_step,
        "itl_seconds": 0.05,
        "batch": 64,
    }
    return choose(**{**args, **overrides})  # type: ignore[arg-type]


def test_the_itl_budget_below_vllms_default_is_the_budget() -> None:
    budget = chosen()
    assert (budget.tokens, budget.source) == (400, token_budget.SOURCE_ITL)
    assert "stays within the 50 ms ITL objective (50 ms" in budget.reason
    assert "vLLM's default 8192 would take 829 ms" in budget.reason


def test_a_spec_value_wins_over_every_rule() -> None:
    budget = chosen(spec_tokens=16384)
    assert (budget.tokens, budget.source) == (16384, token_budget.SOURCE_SPEC)


def test_vllms_default_where_a_full_chunk_fits_or_none_does() -> None:
    assert chosen(itl_budget=9000).tokens == 8192
    assert chosen(itl_budget=9000, gpu_memory_gib=24).tokens == 2048
    none_fits = chosen(itl_budget=0)
    assert (none_fits.tokens, none_fits.source) == (8192, token_budget.SOURCE_DEFAULT)
    assert "no prompt chunk fits the 50 ms ITL objective beside 64" in none_fits.reason


def test_the_floor_vllm_and_prefill_efficiency_need() -> None:
    """vLLM refuses a budget under max_num_seqs; under 256 the weight read dominates a step."""
    tiny = chosen(itl_budget=100)
    assert (tiny.tokens, tiny.source) == (MIN_BUDGET_TOKENS, token_budget.SOURCE_ITL)
    assert "over the 50 ms ITL objective" in tiny.reason
    assert chosen(itl_budget=300, max_num_seqs=320).tokens == 320


def test_without_chunked_prefill_a_step_holds_the_longest_prompt() -> None:
    budget = chosen(chunked_prefill=False, max_model_len=32768)
    assert (budget.tokens, budget.source) == (32768, token_budget.SOURCE_WHOLE_PROMPT)

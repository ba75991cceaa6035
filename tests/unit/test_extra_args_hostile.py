"""Hostile spec.engine.extraArgs: every spelling vLLM's parser accepts for an option the spec owns
(abbreviations, `=` forms, `_` for `-`, glued and prefixed short options, dotted keys), options
that read files or run code, and secrets, refused with the argument, what vLLM reads it as and the
spec field to use; the API server (the CRD's CEL rules, evaluated here with cel-python) refuses
the same arguments wherever a per-item rule can tell, and nothing the operator accepts."""

from __future__ import annotations

import re

import pytest
import re2

from tests.conftest import minimal_spec
from tests.unit.extra_args_cases import ISSUE_CASES, OWN_CASES
from tests.unit.hostile import document, operator_message, python_problems, server_problems, tally
from tokenscale.api.v1alpha1 import cel
from tokenscale.api.v1alpha1.engine_rules import EXTRA_ARGS_RULES
from tokenscale_contract.extra_args_guard import option_problems
from tokenscale_contract.extra_args_policy import REFUSED
from tokenscale_contract.vllm_options import resolve, table

CASES = ISSUE_CASES + OWN_CASES

# Arguments that must pass both checks: no refusal of what the spec does not own.
ALLOWED: list[list[str]] = [
    ["--seed", "7"], ["--enforce-eager"], ["--max-logp=5"], ["-O3"], ["-O", "2"],
    ["--speculative-config.method", "ngram"], ["--reasoning-parser", "deepseek_r1"],
    ["--reasoning_parser=qwen3"], ["-dc", '{"a":1}'], ["--tokenizer-mode", "slow"],
    ["--disable-uvicorn-access-log"], ["--override-generation-config", '{"temperature":0.5}'],
    ["--async-scheduling"], ["-ep"], ["--block-size", "32"], ["--max-num-active-seqs", "8"],
]  # fmt: skip


def spec_with(argv: list[str]) -> dict[str, object]:
    return minimal_spec(engine={"extraArgs": argv})


def test_the_suite_has_more_own_cases_than_issue_cases() -> None:
    assert len(OWN_CASES) >= len(ISSUE_CASES) == 14


@pytest.mark.parametrize(("argv", "expected", "server"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_refused_with_the_argument_and_the_field(
    argv: list[str], expected: list[str], server: bool
) -> None:
    assert python_problems(document(spec_with(argv))) == expected
    assert operator_message(spec_with(argv)) == "; ".join(expected)
    assert bool(server_problems(document(spec_with(argv)))) is server


@pytest.mark.parametrize("argv", ALLOWED, ids=[" ".join(a) for a in ALLOWED])
def test_options_the_spec_does_not_own_pass(argv: list[str]) -> None:
    assert python_problems(document(spec_with(argv))) == []
    assert server_problems(document(spec_with(argv))) == []


def _predicates() -> list[str]:
    """Each extraArgs rule's per-item test, cut out of the rule text the CRD carries."""
    found = []
    for rule in EXTRA_ARGS_RULES:
        _, sep, body = rule.rule.partition("self.extraArgs.all(a, ")
        assert sep and body.endswith(")"), rule.rule
        found.append(body[:-1])
    return found


def _re2_refuses(arg: str) -> bool:
    """The rules' verdict on one item, from their `matches` patterns run by RE2, the engine
    behind CEL's `matches` in cel-go and cel-python (the CEL interpreter itself takes ~20 ms an
    item; test_cel_and_re2_verdicts_agree checks this shortcut on a sample)."""
    for test in _predicates():
        patterns = re.findall(r"a\.matches\('([^']*)'\)", test)
        assert patterns and "\\" not in "".join(patterns), test
        refused = re2.search(patterns[0], arg) is not None
        if refused and not (len(patterns) > 1 and re2.search(patterns[1], arg)):
            return True
    return False


def _corpus() -> list[str]:
    """Spellings of every vLLM option: itself, every prefix, `_` for `-`, `=` and dotted forms,
    values glued to short options."""
    out: set[str] = set()
    for name in table().options:
        dashes = 2 if name.startswith("--") else 1
        for end in range(dashes + 1, len(name) + 1):
            stem = name[:end]
            out |= {stem, stem + "=1", stem + ".x", stem[:dashes] + stem[dashes:].replace("-", "_")}
        if dashes == 1 and len(name) == 2:
            out |= {name + "fp8", name + "4"}
    return sorted(out)


CORPUS = _corpus()


def test_api_server_refuses_every_spelling_of_a_refused_option_and_nothing_allowed() -> None:
    missed, over = [], []
    for arg in CORPUS:
        res = resolve(arg)
        touches_refused = any(o.dest in REFUSED for o in res.options)
        if res.kind in ("option", "ambiguous") and touches_refused and not _re2_refuses(arg):
            missed.append(arg)
        elif res.kind == "option" and not touches_refused and _re2_refuses(arg):
            over.append(arg)
    assert (missed, over) == ([], [])
    assert len(CORPUS) > 20000


def test_what_the_api_server_refuses_the_operator_refuses() -> None:
    refused_by_server = [a for a in CORPUS if _re2_refuses(a)]
    assert [a for a in refused_by_server if not option_problems([a])] == []
    assert len(refused_by_server) > 4000


def test_cel_and_re2_verdicts_agree() -> None:
    """The CEL rules themselves (cel-python) on every 60th spelling and on every case above."""
    sample = CORPUS[::60] + [a for argv, _, _ in CASES for a in argv]
    tests = _predicates()
    for arg in sample:
        verdict = cel.holds("self.all(a, " + " && ".join(f"({t})" for t in tests) + ")", [arg])
        assert verdict is not _re2_refuses(arg), arg


def test_tally() -> None:
    counts = tally((document(spec_with(argv)) for argv, _, _ in CASES), python_problems)
    print(f"extraArgs specs: {dict(counts)}")
    assert counts["tried"] == len(CASES)
    assert counts["rejected clearly"] == len(CASES)

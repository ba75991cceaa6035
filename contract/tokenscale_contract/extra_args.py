"""The check of user-supplied vLLM arguments (`spec.engine.extraArgs`) that the operator runs when
a spec is applied and the worker runs again at start: one function, so both refuse the same
problems with the same words."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from tokenscale_contract.extra_args_guard import option_problems

# Characters a shell would interpret. Arguments reach vLLM through exec, never a shell, so an item
# holding them almost always means someone pasted a command line into one list item.
_SHELL_META = re.compile(r"[\s;&|$`<>()\\\"'*?!{}\[\]~#]")


def _is_json_value(text: str) -> bool:
    # vLLM takes JSON objects for some flags (--speculative-config '{"method": ...}'); such an
    # item is one argv entry whatever characters it holds.
    if not text.startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _shell_problem(i: int, item: str) -> str | None:
    value = item.split("=", 1)[1] if item.startswith("--") and "=" in item else item
    if _is_json_value(value) or not _SHELL_META.search(item):
        return None
    field = f"spec.engine.extraArgs[{i}]"
    if re.search(r"\s", item):
        parts = json.dumps(item.split())
        return (
            f"{field} ({item!r}) contains whitespace: extraArgs is an argument list, not a shell "
            f"line; split it into separate list items, e.g. {parts}"
        )
    char = _SHELL_META.search(item).group(0)  # type: ignore[union-attr]
    return (
        f"{field} ({item!r}) contains the shell metacharacter {char!r}: arguments are passed to "
        "vLLM directly, never through a shell; remove it or give each argument its own list item"
    )


def validate_extra_args(args: Sequence[str]) -> list[str]:
    """Problems with user-supplied vLLM arguments; empty when they are fine.

    >>> validate_extra_args(["--max-num-seqs 64"])[0][:40]
    "spec.engine.extraArgs[0] ('--max-num-seq"
    """
    problems: list[str] = []
    reported: set[int] = set()
    for i, item in enumerate(args):
        if not isinstance(item, str) or item == "":
            problem: str | None = f"spec.engine.extraArgs[{i}] is empty or not a string; remove it"
        else:
            problem = _shell_problem(i, item)
        if problem:
            problems.append(problem)
            reported.add(i)
    items = [a if isinstance(a, str) else "" for a in args]
    return problems + option_problems(items, skip=reported)

"""The verdict on `spec.engine.extraArgs`: each argument resolved to the destination vLLM's parser
would give it (vllm_options), refused with the argument, the reason and the spec field to use
when extra_args_policy says the spec owns that destination, or when vLLM itself would refuse the
command line (an unknown or ambiguous option, a value with no option before it).

Dependency-free: the launcher runs it at worker start and the operator when a spec is applied.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tokenscale_contract.extra_args_policy import GROUP_TITLES, REFUSED
from tokenscale_contract.vllm_options import Resolved, table, walk


def canonical(dest: str) -> str:
    """The option string the messages name for a destination: its long, positive spelling."""
    spelled_out = "--" + dest.replace("_", "-")
    if spelled_out in table().options:
        return spelled_out
    return next(n for n, o in table().options.items() if o.dest == dest and n.startswith("--"))


def _spelled(res: Resolved) -> str:
    """' (vLLM reads '--tensor-parallel' as --tensor-parallel-size)' when the argument was not the
    option spelled out."""
    option = res.options[0]
    head = res.arg.partition("=")[0].partition(".")[0]
    if head == option.name:
        return ""
    return f" (vLLM reads {head!r} as {option.name})"


def _vllm_refuses(field: str, res: Resolved) -> str:
    if res.kind == "unknown":
        return (
            f"{field} ({res.arg!r}) is not an option of vLLM {table().version}, the version the "
            "worker image runs; check its spelling against `vllm serve --help=all`"
        )
    if res.kind == "ambiguous":
        names = ", ".join(sorted(o.name for o in res.options)[:6])
        return (
            f"{field} ({res.arg!r}) is an ambiguous abbreviation (it could be {names}, ...), "
            "which vLLM refuses; spell the option out"
        )
    return (
        f"{field} ({res.arg!r}) is a value with no option before it to take it; put the "
        "option it belongs to in the item before it, e.g. '--seed', '7'"
    )


def refusal(field: str, res: Resolved) -> str | None:
    """The message for one resolved argument, or None when it may pass."""
    refused = [o for o in res.options if o.dest in REFUSED]
    if res.kind == "ambiguous" and refused:
        # vLLM refuses the ambiguity, but spelling it out would not help: say why.
        names = sorted({canonical(o.dest) for o in res.options})
        listed = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        option, how = refused[0], f" (it abbreviates {listed})"
    elif res.kind != "option":
        return _vllm_refuses(field, res)
    elif refused:
        option, how = refused[0], _spelled(res)
    else:
        return None
    rule = REFUSED[option.dest]
    verb = "may set" if res.kind == "ambiguous" else "sets"
    name = canonical(option.dest)
    head = f"{field} ({res.arg!r}) {verb} {name}{how}, {GROUP_TITLES[rule.group]}"
    if rule.group in ("parallel", "plan", "model"):
        return f"{head}; remove it from extraArgs and set {rule.use} instead"
    if rule.group == "secret":
        return f"{head}; remove it and use {rule.use}"
    return f"{head} ({rule.use}); remove it from extraArgs"


def option_problems(args: Sequence[str], skip: Collection[int] = ()) -> list[str]:
    """One message per refused argument of `args` (indices in `skip` were reported already)."""
    problems = []
    for i, res in walk(list(args)):
        message = None if i in skip else refusal(f"spec.engine.extraArgs[{i}]", res)
        if message:
            problems.append(message)
    return problems

"""How vLLM reads an argument list, without vLLM: its `vllm serve` option table (a checked-in
snapshot, vllm_options.json, made by hack/vllm_options_snapshot.py at the version the worker image
pins) and the resolution rules of its FlexibleArgumentParser on top of argparse.

FlexibleArgumentParser first rewrites each `--key[=value]` so underscores in the key become dashes
(`--max_model_len` is `--max-model-len`), turns `-O3` into `--optimization-level 3`, and folds
dotted keys (`--compilation-config.level 3`) into their base option. argparse then resolves an
option that is not spelled out: a unique prefix of a long option (`--tensor-parallel=8` is
`--tensor-parallel-size 8`), a two-character short option glued to its value (`-qfp8` is
`-q fp8`), or a prefix of a short option (`-t` is `-tp`). `resolve` follows the same steps, so the
guard sees the destination vLLM would set, however the argument is spelled.

Dependency-free: the operator imports it as part of the worker contract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

Kind = Literal["option", "ambiguous", "unknown", "value"]


@dataclass(frozen=True)
class Option:
    """One option string of vLLM's parser."""

    name: str
    dest: str
    arity: str  # '0' a switch, '1' one value, or argparse's '?', '*', '+'

    @property
    def takes_value(self) -> bool:
        return self.arity != "0"


@dataclass(frozen=True)
class Resolved:
    """What vLLM would make of one argument.

    kind: option (one destination), ambiguous (a prefix of options with different destinations:
    vLLM refuses it), unknown (no such option: vLLM refuses it), value (not an option).
    """

    arg: str
    kind: Kind
    options: tuple[Option, ...] = ()
    explicit_value: bool = False
    takes_next: bool = False

    @property
    def dests(self) -> frozenset[str]:
        return frozenset(o.dest for o in self.options)


@dataclass(frozen=True)
class OptionTable:
    version: str
    options: dict[str, Option]


@cache
def table() -> OptionTable:
    """The snapshot of vLLM's option table (read once)."""
    text = resources.files(__package__).joinpath("vllm_options.json").read_text()
    raw = json.loads(text)
    options = {name: Option(name, dest, arity) for name, (dest, arity) in raw["options"].items()}
    return OptionTable(raw["vllm"], options)


# argparse treats these as values, not options, when no option looks like a negative number.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def normalize(arg: str) -> str:
    """FlexibleArgumentParser's rewrite of one item: `--a_b=x_y` -> `--a-b=x_y`, `-O3` ->
    `--optimization-level=3`, `--a_b.c_d` -> `--a-b.c_d` (the key up to the first dot)."""
    if arg.startswith("--"):
        key, sep, value = arg.partition("=")
        head, dot, tail = key[2:].partition(".")
        return "--" + head.replace("_", "-") + dot + tail + sep + value
    if arg.startswith("-O") and arg != "-O":
        level = arg[3:] if arg[2:3] == "=" else arg[2:]
        return "--optimization-level=" + level
    return arg


def _option_key(arg: str) -> tuple[str, bool, bool]:
    """The option part of a normalized argument as argparse sees it, whether a value came with it
    (`=value`), and whether it is dotted without `=` (vLLM then takes the next item as its value,
    whatever it looks like)."""
    key, sep, _ = arg.partition("=")
    if "." in key:
        # `--speculative-config.method ngram`: vLLM folds it into `--speculative-config <json>`.
        return key.partition(".")[0], True, not sep
    if key.startswith("--"):
        return key, bool(sep), False
    # argparse splits a single-dash argument at `=` only for an exact option name.
    return (key, True, False) if sep and key in table().options else (arg, False, False)


def _candidates(seen: str, options: dict[str, Option]) -> tuple[list[Option], bool]:
    """argparse's _get_option_tuples: prefixes of long options; for a single dash, the
    two-character option glued to its value (`-qfp8`) or a prefix of a short option (`-t`)."""
    if seen.startswith("--"):
        return [o for name, o in options.items() if name.startswith(seen)], False
    glued = options.get(seen[:2]) if len(seen) > 2 else None
    prefixed = [o for name, o in options.items() if name.startswith(seen)]
    return ([glued] if glued else []) + prefixed, glued is not None


def resolve(arg: str) -> Resolved:
    """What vLLM's parser makes of `arg`."""
    options = table().options
    if not arg.startswith("-") or arg in ("-", "--") or _NEGATIVE_NUMBER.match(arg):
        return Resolved(arg, "value")
    seen, attached, takes_next = _option_key(normalize(arg))
    if seen in options:
        return Resolved(arg, "option", (options[seen],), attached, takes_next)
    found, glued = _candidates(seen, options)
    if not found:
        return Resolved(arg, "unknown")
    if len({o.dest for o in found}) > 1:
        return Resolved(arg, "ambiguous", tuple(found))
    return Resolved(arg, "option", (found[0],), attached or glued, takes_next)


def _values_taken(res: Resolved, rest: list[str]) -> int:
    """How many of the following items argparse (or vLLM's dotted-key folding) consumes."""
    if res.kind == "value":
        return 0
    if res.takes_next:
        return min(1, len(rest))
    if res.explicit_value:
        return 0
    # An unknown or ambiguous option is refused anyway; taking the value after it (as the option
    # would) keeps that value from being reported a second time as a stray.
    arity = res.options[0].arity if res.kind == "option" else "?"
    limit = {"0": 0, "1": 1, "?": 1}.get(arity, len(rest))
    taken = 0
    while taken < limit and taken < len(rest) and resolve(rest[taken]).kind == "value":
        taken += 1
    return taken


def walk(args: list[str]) -> list[tuple[int, Resolved]]:
    """Each item of `args` that vLLM reads as an option (or refuses as one), with its index; the
    values an option consumes are skipped. An item no option consumes comes back as kind 'value'
    (vLLM would take it as a stray positional and refuse the command line)."""
    out: list[tuple[int, Resolved]] = []
    i = 0
    while i < len(args):
        res = resolve(args[i])
        if args[i] == "-O" and args[i + 1 : i + 2] in (["0"], ["1"], ["2"], ["3"]):
            # FlexibleArgumentParser turns `-O <n>` into `--optimization-level <n>`.
            res = resolve("--optimization-level")
        out.append((i, res))
        i += 1 + _values_taken(res, args[i + 1 :])
    return out

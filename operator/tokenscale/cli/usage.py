"""What every `tokenscale` command shares at its boundary: the exit codes, a parser whose usage
errors are one line, strict argument types, and pydantic errors as one line per field.

Exit codes (the README's CLI table and every command's --help list them):
0 success; 1 `crds --check` found drift; 2 usage error (an unknown option, a bad option value,
an output path that cannot be written); 3 no plan fits (`plan`, `bench`); 4 bad input (a file
the command reads or writes is missing, unreadable, not UTF-8, malformed, or holds an invalid
value).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

from pydantic import ValidationError

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_USAGE = 2
EXIT_INFEASIBLE = 3
EXIT_BAD_INPUT = 4
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT

EXIT_CODES_HELP = (
    "exit status: 0 success, 1 generated files drifted (crds --check), 2 usage error "
    "(bad option or value), 3 no plan fits, 4 bad input file (missing, unreadable, "
    "malformed or invalid)"
)


class CliError(Exception):
    """A refusal to report as one line on stderr and exit with `code` (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that names the option and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


# The subcommand registry every command adds itself to (generic only to type checkers).
Subcommands: TypeAlias = "argparse._SubParsersAction[OneLineParser]"


def fail(prog: str, error: CliError) -> int:
    """Print each line of a refusal prefixed with the command and return its exit code."""
    for line in str(error).splitlines():
        print(f"{prog}: {line}", file=sys.stderr)
    return error.code


def number(
    low: float, high: float = math.inf, *, low_open: bool = False, what: str = "a number"
) -> Callable[[str], float]:
    """An argparse type: a finite float in [low, high] ((low, high] when `low_open`)."""
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    if high != math.inf:
        bound += f" and <= {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"{text!r}: give a finite number {bound}")
        return value

    return parse


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a base-10 integer in [low, high]."""
    bound = f">= {low}" if high is None else f"from {low} to {high}"

    def parse(text: str) -> int:
        stripped = text.strip()
        digits = stripped[1:] if stripped[:1] in "+-" else stripped
        if not (digits.isascii() and digits.isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give one {bound}")
        value = int(stripped)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: give an integer {bound}")
        return value

    return parse


def writable_file(option: str, text: str | None) -> None:
    """Refuse, before a long run, an output path that cannot be written."""
    if not text:
        return
    path = Path(text)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CliError(f"{option} {text}: is a directory; give a file name", EXIT_USAGE)
    if not parent.is_dir():
        raise CliError(f"{option} {text}: directory {parent} does not exist; create it", EXIT_USAGE)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"{option} {text}: not writable; choose another path", EXIT_USAGE)


def _fix(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "required; add it"
    if kind == "extra_forbidden":
        return "unknown field; remove it or correct its spelling"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    shown = repr(error.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{message} (got {shown})"


def validation_lines(
    exc: ValidationError,
    prefix: str = "",
    where: Callable[[tuple[int | str, ...]], str] | None = None,
) -> list[str]:
    """One line per pydantic error: `<where>: <field path>: <problem and fix>`.

    `where(loc)` names the place (a file and line, or a command-line option) for a field."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = ".".join([prefix, *map(str, loc)] if prefix else map(str, loc)) or "(document)"
        place = f"{where(loc)}: " if where else ""
        lines.append(f"{place}{path}: {_fix(error)}")
    return lines

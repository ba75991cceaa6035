"""Argument types for `tokenscale-worker`: every option checked at parse time, one-line errors.

argparse turns an ArgumentTypeError into `argument --port: <message>`, so each message says what
is allowed and what was given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from tokenscale_contract.histogram_buckets import check_buckets
from tokenscale_contract.interface import TUNING_PATH


class OneLineParser(argparse.ArgumentParser):
    """Errors as one line on stderr (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def int_range(low: int, high: int, what: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}{what}, got {text[:40]}")
        return value

    return parse


def float_range(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text[:40]!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            bound = f"more than {low:g}" if low_open else f"at least {low:g}"
            raise argparse.ArgumentTypeError(
                f"must be a finite number {bound} and at most {high:g}, got {text[:40]}"
            )
        return value

    return parse


PORT = int_range(0, 65535, " (0 picks a free port)")


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        try:
            os.stat(candidate)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue
        except OSError as err:
            raise argparse.ArgumentTypeError(f"{candidate}: {err.strerror}") from None
        return candidate
    return None


def tuning_path(text: str) -> str:
    """A file path the watcher can poll: it may not exist yet, but nothing in the way may be
    a directory where a file is meant or a file where a directory is meant."""
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"must be a file path such as {TUNING_PATH}")
    path = Path(text)
    found = _nearest_existing(path)
    if found == path:
        if path.is_dir():
            raise argparse.ArgumentTypeError(
                f"{text} is a directory; give the tuning file inside it, e.g. "
                f"{path / Path(TUNING_PATH).name}"
            )
        if not os.access(path, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text} is not readable by this user")
    elif found is not None and not found.is_dir():
        raise argparse.ArgumentTypeError(f"{found} is a file, so {text} cannot exist under it")
    return text


def label(text: str) -> str:
    key, sep, _value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"must look like name=value, got {text[:60]!r}")
    return text


def histogram_buckets(text: str) -> dict[str, list[float]]:
    """`--custom-histogram-buckets`: a JSON object of bucket family -> bounds, vLLM's rules."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err.msg} at character {err.pos}") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(b, int | float) for b in v) for v in value.values()
    ):
        raise argparse.ArgumentTypeError('expected {"family": [bound, ...], ...}')
    try:
        return check_buckets({str(k): [float(b) for b in v] for k, v in value.items()})
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None

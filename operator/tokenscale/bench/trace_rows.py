"""Strict parsing of one trace row's values: every refusal says what was wrong and the fix.

Bounds: a request reads or writes at most `MAX_TOKENS` tokens (no model's context is longer than
10 million tokens); a Mooncake timestamp is at most `MAX_TIMESTAMP_MS` (about 317 years in
milliseconds, so even epoch milliseconds fit, while `1e15` is refused instead of asking the
replay for 31 000 years of 2 s samples).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_TOKENS = 10_000_000
MAX_TIMESTAMP_MS = 10**13
# Mooncake's hash ids name 512-token blocks of the prompt (FAST25-release/traces/README).
HASH_BLOCK_TOKENS = 512
MAX_HASH_ID = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Longer digit strings are far above MAX_TOKENS; not parsed (int() refuses 4300+ digits anyway).
_MAX_DIGITS = 24


class RowError(ValueError):
    """One bad value in a row; the reader adds the file and line."""


def _shown(value: object) -> str:
    text = f"{value:g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _in_range(field: str, n: int) -> int:
    if n < 1:
        raise RowError(f"{field} must be at least 1, got {n}; a request has 1 or more tokens")
    if n > MAX_TOKENS:
        raise RowError(
            f"{field} {_shown(n)} is above {MAX_TOKENS} (no model has a context that long); "
            "fix the row"
        )
    return n


def token_cell(field: str, text: str) -> int:
    """A count from a CSV cell: ASCII digits only (no '12.0', '1_000' or other scripts)."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        raise RowError(f"{field} must be an integer, got {_shown(text)}; give a token count")
    if len(text.lstrip("+-").lstrip("0")) > _MAX_DIGITS:
        raise RowError(f"{field} {_shown(text)} is above {MAX_TOKENS}; fix the row")
    return _in_range(field, int(text))


def token_count(field: str, value: object) -> int:
    """A count from a JSON value: an integer (not a bool, a float or a string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _in_range(field, value)
    raise RowError(
        f"{field} must be an integer, got {_shown(value)}; give a token count as a JSON integer"
    )


def timestamp_seconds(value: object) -> float:
    """A Mooncake timestamp (a JSON number of milliseconds) as seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(
            f"timestamp must be a number of milliseconds, got {_shown(value)}; "
            "write it as an unquoted JSON number"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError(f"timestamp must be finite, got {value!r}; give milliseconds")
    if value < 0:
        raise RowError(
            f"timestamp {_shown(value)} is negative; give milliseconds from the trace start"
        )
    if value > MAX_TIMESTAMP_MS:
        raise RowError(
            f"timestamp {_shown(value)} ms is beyond {MAX_TIMESTAMP_MS:.0e} ms (317 years); "
            "give milliseconds from the trace start"
        )
    return float(value) / 1000.0


def _refuse_constant(name: str) -> Any:
    raise RowError(f"{name} is not a number; give a finite value")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RowError(f"key {key!r} appears twice; keep one")
        obj[key] = value
    return obj


def hash_ids(value: object, prompt: int) -> tuple[int, ...]:
    """Mooncake's `hash_ids`: one id per 512-token block of the prompt, a shared prefix sharing
    ids. Absent means no prefix information (an empty tuple)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RowError(
            f"hash_ids must be a JSON list of integers, got {_shown(value)}; "
            "give one id per 512-token block of the prompt, or leave the key out"
        )
    blocks = -(-prompt // HASH_BLOCK_TOKENS)
    if len(value) > blocks:
        raise RowError(
            f"hash_ids has {len(value)} ids but input_length {prompt} makes {blocks} blocks of "
            f"{HASH_BLOCK_TOKENS} tokens; give at most one id per block"
        )
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_HASH_ID:
            raise RowError(
                f"hash_ids must hold integers from 0 to 2^63-1, got {_shown(v)}; fix the row"
            )
    return tuple(value)


def mooncake_row(text: str) -> tuple[float, int, int, tuple[int, ...]]:
    """(arrival s, prompt tokens, output tokens, prefix block ids) from one JSONL line."""
    try:
        row = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except RowError:
        raise
    except json.JSONDecodeError as e:
        raise RowError(f"not JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # an integer of 4300+ digits
        raise RowError(f"not a trace row ({e})") from None
    except RecursionError:
        raise RowError("not a trace row (JSON nested too deeply)") from None
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    if "timestamp" not in row:
        raise RowError("needs a numeric 'timestamp' (ms)")
    prompt = token_count("input_length", row.get("input_length"))
    return (
        timestamp_seconds(row["timestamp"]),
        prompt,
        token_count("output_length", row.get("output_length")),
        hash_ids(row.get("hash_ids"), prompt),
    )

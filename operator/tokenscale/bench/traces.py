"""Request traces: the Azure LLM inference CSV and the Mooncake JSONL formats.

Azure (Patel et al., Splitwise, ISCA 2024; Azure Public Dataset):
    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44
Mooncake (Qin et al., FAST 2025; kvcache-ai/Mooncake `FAST25-release/traces`), one JSON object
per line, `timestamp` in milliseconds from the trace start:
    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [...]}

Both are read a line at a time (memory grows with the rows, never with a line's length or the
time the trace spans) and strictly: a bad row raises `TraceError` naming the file, the line, the
field and the fix. Refused: token counts that are not whole numbers from 1 to `MAX_TOKENS`;
timestamps that are not plain numbers (booleans, strings, NaN, Infinity), negative, or beyond
`MAX_TIMESTAMP_MS`; Azure timestamps that are not `YYYY-MM-DD HH:MM:SS[.digits]`; a key twice
in one JSON object; lines that are not UTF-8.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tokenscale.bench.trace_rows import RowError, mooncake_row, token_cell

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Blocks = npt.NDArray[np.object_]  # per request, a tuple of prefix block ids
# The Azure conversation trace is not shipped with the project (it is the user's data): found
# through TOKENSCALE_AZURE_TRACE, else beside the checkout in ../shared/data.
AZURE_TRACE_ENV = "TOKENSCALE_AZURE_TRACE"
AZURE_HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
# A Mooncake row with a 128k-token prompt carries ~250 hash ids (~3 KB); 1 MiB is no real row.
MAX_LINE_BYTES = 1 << 20
JITTER_S = 30.0
_AZURE_TIMESTAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
)


def default_azure_trace() -> Path:
    """Where `--check-targets` and the trace tests look for AzureLLMInferenceTrace_conv.csv."""
    if os.environ.get(AZURE_TRACE_ENV):
        return Path(os.environ[AZURE_TRACE_ENV])
    checkout = Path(__file__).resolve().parents[3]
    return checkout.parent / "shared" / "data" / "AzureLLMInferenceTrace_conv.csv"


class TraceError(ValueError):
    """A trace file that cannot be read, with file and line number."""


def span_text(seconds: float) -> str:
    """A duration for people: 3599.5 s -> '1.0 h (3599.5 s)'."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days ({seconds:.0f} s)"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h ({seconds:.1f} s)"
    return f"{seconds:.1f} s"


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival; arrival in seconds from the trace start. `hash_ids`: per
    request, the ids of its prompt's 512-token blocks (Mooncake traces), for prefix caching;
    None when the trace has none."""

    name: str
    arrival: F64
    prompt: I64
    output: I64
    hash_ids: Blocks | None = None

    def blocks(self, index: npt.NDArray[np.int64] | npt.NDArray[np.bool_] | slice) -> Blocks | None:
        """The hash ids of the requests at `index` (numpy indexing), or None."""
        return None if self.hash_ids is None else self.hash_ids[index]

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def duration(self) -> float:
        return float(self.arrival[-1]) if len(self.arrival) else 0.0

    def summary(self) -> str:
        """'19366 requests over 1.0 h (3599.5 s)'."""
        return f"{len(self)} requests over {span_text(self.duration)}"

    def scaled(
        self,
        rate_scale: float = 1.0,
        duration: float | None = None,
        max_tokens: int | None = None,
        seed: int = 0,
    ) -> Trace:
        """Multiply the request rate by `rate_scale` keeping the trace's duration and daily
        shape: x6 overlays 6 copies of every request, each shifted by a seeded uniform jitter of
        up to +/-30 s (x2.5: two copies plus a copy of half the requests; x0.5 keeps half).
        Then keep the first `duration` seconds and clip prompt + output to `max_tokens`."""
        if not (math.isfinite(rate_scale) and rate_scale > 0):
            raise TraceError(f"--rate-scale must be a finite number > 0, got {rate_scale}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise TraceError(f"--duration must be a finite number of seconds > 0, got {duration}")
        rng = np.random.default_rng(seed)
        whole, frac = int(rate_scale), rate_scale - int(rate_scale)
        parts = [np.arange(len(self.arrival))] * whole
        if frac > 0:
            parts.append(np.flatnonzero(rng.random(len(self.arrival)) < frac))
        idx = np.concatenate(parts) if parts else np.arange(0)
        arrival = self.arrival[idx]
        if rate_scale > 1:
            arrival = np.clip(arrival + rng.uniform(-JITTER_S, JITTER_S, len(idx)), 0, None)
        order = np.argsort(arrival, kind="stable")
        arrival, prompt, output = arrival[order], self.prompt[idx][order], self.output[idx][order]
        blocks = self.blocks(idx[order])
        if duration is not None:
            keep = arrival <= duration
            arrival, prompt, output = arrival[keep], prompt[keep], output[keep]
            blocks = None if blocks is None else blocks[keep]
        if max_tokens is not None:
            prompt = np.minimum(prompt, max_tokens - 64)
            output = np.minimum(output, max_tokens - prompt - 1)
        name = self.name if rate_scale == 1.0 else f"{self.name} x{rate_scale:g}"
        return Trace(name, arrival, prompt, output, blocks)


def block_array(rows: list[tuple[int, ...]]) -> Blocks:
    """An object array holding one tuple per request (numpy would broadcast a plain list)."""
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out


class _Columns:
    """Rows accumulated as they are read, then sorted into a `Trace`."""

    def __init__(self) -> None:
        self.arrival: list[float] = []
        self.prompt: list[int] = []
        self.output: list[int] = []
        self.hash_ids: list[tuple[int, ...]] = []

    def add(self, arrival: float, prompt: int, output: int, hash_ids: tuple[int, ...] = ()) -> None:
        self.arrival.append(arrival)
        self.prompt.append(prompt)
        self.output.append(output)
        self.hash_ids.append(hash_ids)

    def trace(self, path: Path) -> Trace:
        if not self.arrival:
            raise TraceError(f"{path}: no requests; the trace needs at least one row")
        a = np.asarray(self.arrival, dtype=np.float64)
        order = np.argsort(a, kind="stable")
        a = a[order] - a[order][0]
        p = np.asarray(self.prompt, dtype=np.int64)[order]
        o = np.asarray(self.output, dtype=np.int64)[order]
        blocks = block_array(self.hash_ids)[order] if any(self.hash_ids) else None
        return Trace(path.stem, a, p, o, blocks)


def _open(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, decoded as UTF-8, each at most MAX_LINE_BYTES."""
    if path.is_dir():
        raise TraceError(f"{path}: is a directory; give a trace file")
    try:
        f = path.open("rb")
    except OSError as e:
        raise TraceError(f"{path}: cannot open ({e.strerror}); check the path") from None
    with f:
        line = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            line += 1
            if len(raw) > MAX_LINE_BYTES:
                raise TraceError(
                    f"{path}:{line}: line longer than {MAX_LINE_BYTES} bytes; not a trace row"
                )
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise TraceError(
                    f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x}); "
                    "save the trace as UTF-8 text"
                ) from None
            yield line, text


def _csv_fields(path: Path, line: int, text: str) -> list[str]:
    try:
        return next(csv.reader([text]), [])
    except csv.Error as e:
        raise TraceError(f"{path}:{line}: not a CSV row ({e})") from None


def _azure_timestamp(text: str) -> tuple[int, float]:
    """Whole seconds since the epoch and the fraction, read digit by digit (Python's datetime
    takes at most 6 fractional digits; the Azure files carry 7, finer than a float holding
    epoch seconds resolves). Naive times are UTC (no DST jumps)."""
    match = _AZURE_TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise RowError(f"TIMESTAMP {text!r} is not 'YYYY-MM-DD HH:MM:SS[.fraction]'")
    day, clock, frac = match.groups()
    try:
        base = datetime.fromisoformat(f"{day} {clock}").replace(tzinfo=UTC)
    except ValueError as e:
        raise RowError(f"TIMESTAMP {text!r} is no calendar time ({e})") from None
    return int(base.timestamp()), (int(frac) / 10 ** len(frac) if frac else 0.0)


def load_azure(path: str | Path) -> Trace:
    """Azure LLM inference trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)."""
    path = Path(path)
    rows = _open(path)
    first = next(rows, None)
    header = _csv_fields(path, 1, first[1]) if first else []
    if [h.strip() for h in header] != AZURE_HEADER:
        raise TraceError(f"{path}:1: expected the header line {','.join(AZURE_HEADER)}")
    columns = _Columns()
    origin: int | None = None  # the first row's second: arrivals stay small, exact floats
    for line, text in rows:
        if not text.strip():
            continue
        row = _csv_fields(path, line, text)
        if len(row) != len(AZURE_HEADER):
            raise TraceError(f"{path}:{line}: expected 3 columns, got {len(row)}")
        try:
            seconds, fraction = _azure_timestamp(row[0])
            origin = seconds if origin is None else origin
            columns.add(
                seconds - origin + fraction,
                token_cell("ContextTokens", row[1]),
                token_cell("GeneratedTokens", row[2]),
            )
        except RowError as e:
            raise TraceError(f"{path}:{line}: {e}") from None
    return columns.trace(path)


def load_mooncake(path: str | Path) -> Trace:
    """Mooncake JSONL (timestamp ms, input_length, output_length, optional hash_ids)."""
    path = Path(path)
    columns = _Columns()
    for line, text in _open(path):
        if not text.strip():
            continue
        try:
            columns.add(*mooncake_row(text))
        except RowError as e:
            raise TraceError(f"{path}:{line}: {e}") from None
    return columns.trace(path)


def load(path: str | Path) -> Trace:
    """Pick the reader by extension: .csv is Azure, .jsonl/.json is Mooncake."""
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory; give a trace file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_azure(path)
    if suffix in (".jsonl", ".json"):
        return load_mooncake(path)
    raise TraceError(f"{path}: unknown trace format; use an Azure .csv or a Mooncake .jsonl")

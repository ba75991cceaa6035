"""Request traces: the Azure LLM inference CSV and the Mooncake JSONL formats.

Azure (Patel et al., Splitwise, ISCA 2024; Azure Public Dataset):
    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44
Mooncake (Qin et al., FAST 2025; kvcache-ai/Mooncake `FAST25-release/traces`), one JSON object
per line, `timestamp` in milliseconds from the trace start:
    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [...]}

A bad row raises `TraceError` naming the file, the line and what was wrong.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
# The Azure conversation trace is not shipped with the project (it is the user's data): found
# through TOKENSCALE_AZURE_TRACE, else beside the checkout in ../shared/data.
AZURE_TRACE_ENV = "TOKENSCALE_AZURE_TRACE"


def default_azure_trace() -> Path:
    """Where `--check-targets` and the trace tests look for AzureLLMInferenceTrace_conv.csv."""
    if os.environ.get(AZURE_TRACE_ENV):
        return Path(os.environ[AZURE_TRACE_ENV])
    checkout = Path(__file__).resolve().parents[3]
    return checkout.parent / "shared" / "data" / "AzureLLMInferenceTrace_conv.csv"


JITTER_S = 30.0
I64 = npt.NDArray[np.int64]


class TraceError(ValueError):
    """A trace file that cannot be read, with file and line number."""


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival; arrival in seconds from the trace start."""

    name: str
    arrival: F64
    prompt: I64
    output: I64

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def duration(self) -> float:
        return float(self.arrival[-1]) if len(self.arrival) else 0.0

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
        if rate_scale <= 0:
            raise TraceError(f"--rate-scale must be positive, got {rate_scale}")
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
        if duration is not None:
            keep = arrival <= duration
            arrival, prompt, output = arrival[keep], prompt[keep], output[keep]
        if max_tokens is not None:
            prompt = np.minimum(prompt, max_tokens - 64)
            output = np.minimum(output, max_tokens - prompt - 1)
        name = self.name if rate_scale == 1.0 else f"{self.name} x{rate_scale:g}"
        return Trace(name, arrival, prompt, output)


def _sorted(name: str, arrival: list[float], prompt: list[int], output: list[int]) -> Trace:
    a = np.asarray(arrival, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    a = a[order] - (a[order][0] if len(a) else 0.0)
    p = np.asarray(prompt, dtype=np.int64)[order]
    o = np.asarray(output, dtype=np.int64)[order]
    return Trace(name, a, p, o)


def _positive(path: Path, line: int, field: str, value: object) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise TraceError(f"{path}:{line}: {field} must be an integer, got {value!r}") from None
    if n < 1:
        raise TraceError(f"{path}:{line}: {field} must be at least 1, got {n}")
    return n


def load_azure(path: str | Path) -> Trace:
    """Azure LLM inference trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)."""
    path = Path(path)
    arrival: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != [
            "TIMESTAMP",
            "ContextTokens",
            "GeneratedTokens",
        ]:
            raise TraceError(f"{path}:1: expected header TIMESTAMP,ContextTokens,GeneratedTokens")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 3:
                raise TraceError(f"{path}:{line}: expected 3 columns, got {len(row)}")
            arrival.append(_timestamp(path, line, row[0]))
            prompt.append(_positive(path, line, "ContextTokens", row[1]))
            output.append(_positive(path, line, "GeneratedTokens", row[2]))
    if not arrival:
        raise TraceError(f"{path}: no requests")
    return _sorted(path.stem, arrival, prompt, output)


def _timestamp(path: Path, line: int, text: str) -> float:
    # Python parses at most 6 fractional digits; the Azure files carry 7.
    text = text.strip()
    head, _, frac = text.partition(".")
    try:
        base = datetime.fromisoformat(head)
        return base.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        raise TraceError(
            f"{path}:{line}: TIMESTAMP {text!r} is not 'YYYY-MM-DD HH:MM:SS[.fraction]'"
        ) from None


def load_mooncake(path: str | Path) -> Trace:
    """Mooncake JSONL (timestamp ms, input_length, output_length)."""
    path = Path(path)
    arrival: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    with path.open() as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
                ts = float(row["timestamp"])
            except json.JSONDecodeError as e:
                raise TraceError(f"{path}:{line}: not JSON ({e.msg})") from None
            except (KeyError, TypeError, ValueError):
                raise TraceError(f"{path}:{line}: needs a numeric 'timestamp' (ms)") from None
            arrival.append(ts / 1000.0)
            prompt.append(_positive(path, line, "input_length", row.get("input_length")))
            output.append(_positive(path, line, "output_length", row.get("output_length")))
    if not arrival:
        raise TraceError(f"{path}: no requests")
    return _sorted(path.stem, arrival, prompt, output)


def load(path: str | Path) -> Trace:
    """Pick the reader by extension: .csv is Azure, .jsonl/.json is Mooncake."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return load_azure(path)
    if suffix in (".jsonl", ".json"):
        return load_mooncake(path)
    raise TraceError(f"{path}: unknown trace format; use an Azure .csv or a Mooncake .jsonl")

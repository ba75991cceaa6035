"""Trace parsers: Azure CSV and Mooncake JSONL, with line-numbered errors on bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tokenscale.bench.traces import (
    AZURE_TRACE_ENV,
    TraceError,
    default_azure_trace,
    load,
    load_azure,
    load_mooncake,
)
from tokenscale.bench.workload import default_workload, long_output_workload

AZURE = default_azure_trace()


def test_azure_csv(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
    )
    t = load_azure(f)
    assert len(t) == 2 and t.arrival[0] == 0.0
    assert t.arrival[1] == pytest.approx(4.314579, abs=1e-5)
    assert t.prompt.tolist() == [374, 396] and t.output.tolist() == [44, 109]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2023-11-16 18:15:50.99,abc,109", "t.csv:3: ContextTokens must be an integer"),
        ("yesterday,10,10", "t.csv:3: TIMESTAMP 'yesterday'"),
        ("2023-11-16 18:15:50.99,10", "t.csv:3: expected 3 columns"),
        ("2023-11-16 18:15:50.99,10,0", "t.csv:3: GeneratedTokens must be at least 1"),
    ],
)
def test_azure_bad_rows_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    f = tmp_path / "t.csv"
    f.write_text(f"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,1,1\n{row}\n")
    with pytest.raises(TraceError, match=message):
        load_azure(f)


def test_mooncake_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"timestamp": 1500, "input_length": 6955, "output_length": 52, "hash_ids": [1]}\n'
        '{"timestamp": 0, "input_length": 10, "output_length": 5}\n'
    )
    t = load(f)
    assert t.arrival.tolist() == [0.0, 1.5] and t.prompt.tolist() == [10, 6955]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "m.jsonl:2: not JSON"),
        ('{"input_length": 5, "output_length": 5}', "m.jsonl:2: needs a numeric 'timestamp'"),
        ('{"timestamp": 5, "input_length": -1, "output_length": 5}', "m.jsonl:2: input_length"),
    ],
)
def test_mooncake_bad_rows_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n' + line + "\n")
    with pytest.raises(TraceError, match=message):
        load_mooncake(f)


def test_scaling_and_clipping() -> None:
    t = default_workload(3, duration=600)
    s = t.scaled(2.0, duration=300, max_tokens=2048)
    assert s.arrival.max() <= 300 and (s.prompt + s.output < 2048).all()
    assert len(s) == pytest.approx(2 * np.sum(t.arrival <= 300), rel=0.03)
    assert len(t.scaled(0.5)) == pytest.approx(len(t) / 2, rel=0.05)
    assert t.scaled(2.0, seed=1).arrival.tolist() == t.scaled(2.0, seed=1).arrival.tolist()


def test_embedded_workload_matches_its_sources() -> None:
    t = default_workload(1)
    assert 3500 < t.duration <= 3600
    assert np.median(t.prompt) == pytest.approx(1020, rel=0.05)
    assert np.median(t.output) == pytest.approx(129, rel=0.08)
    assert default_workload(1).arrival.tolist() == t.arrival.tolist()


def test_long_output_workload_keeps_the_day_with_longer_answers() -> None:
    t = long_output_workload(1)
    assert 3500 < t.duration <= 3600
    assert long_output_workload(1).output.tolist() == t.output.tolist()
    assert np.median(t.prompt) == pytest.approx(250, rel=0.05)
    assert np.median(t.output) == pytest.approx(400, rel=0.05)
    # 40 req/s at the peak instead of 28: ~40/28 as many requests as the conversation day.
    assert len(t) == pytest.approx(len(default_workload(1)) * 40 / 28, rel=0.05)


@pytest.mark.skipif(
    not AZURE.exists(), reason=f"Azure trace not at {AZURE} (set {AZURE_TRACE_ENV})"
)
def test_real_azure_file() -> None:
    t = load_azure(AZURE)
    assert len(t) == 19366 and 3400 < t.duration < 3700

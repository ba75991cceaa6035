"""Trace readers and the replay on hostile traces: every bad row is refused with its file, line,
field and fix; every valid row is read exactly and replayed (none lost after the last sample);
memory follows the rows, not the time the trace spans."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.conftest import Record
from tokenscale.bench import cli as bench_cli
from tokenscale.bench.policies import Static
from tokenscale.bench.runner import simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.traces import Trace, TraceError, load
from tokenscale.cli.usage import OneLineParser

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
FIRST = "2023-11-16 18:15:46.0,10,10\n"
ROW = '{{"timestamp": {ts}, "input_length": {i}, "output_length": {o}}}\n'


def moon(ts: object = 0, i: object = 10, o: object = 5) -> str:
    return ROW.format(ts=ts, i=i, o=o)


def azure(*rows: str) -> str:
    return HEADER + FIRST + "".join(r + "\n" for r in rows)


# (case, file name, content, message after "{f}:")
REFUSED: list[tuple[str, str, bytes, str]] = [
    # The cases.
    (
        "csv-tokens-above-2-63",
        "t.csv",
        azure("2023-11-16 18:15:47.0,9223372036854775808,10").encode(),
        "3: ContextTokens 9223372036854775808 is above 10000000 (no model has a context that "
        "long); fix the row",
    ),
    (
        "json-tokens-above-2-64",
        "t.jsonl",
        (moon() + moon(1, 2**64)).encode(),
        "2: input_length 18446744073709551616 is above 10000000 (no model has a context that "
        "long); fix the row",
    ),
    (
        "nan-timestamp",
        "t.jsonl",
        (moon() + moon("NaN")).encode(),
        "2: NaN is not a number; give a finite value",
    ),
    (
        "infinity-timestamp",
        "t.jsonl",
        (moon() + moon("Infinity")).encode(),
        "2: Infinity is not a number; give a finite value",
    ),
    (
        "minus-infinity-timestamp",
        "t.jsonl",
        (moon() + moon("-Infinity")).encode(),
        "2: -Infinity is not a number; give a finite value",
    ),
    (
        "timestamp-1e15-ms",
        "t.jsonl",
        (moon() + moon("1e15")).encode(),
        "2: timestamp 1e+15 ms is beyond 1e+13 ms (317 years); give milliseconds from the "
        "trace start",
    ),
    (
        "timestamp-true",
        "t.jsonl",
        (moon() + moon("true")).encode(),
        "2: timestamp must be a number of milliseconds, got True; write it as an unquoted JSON "
        "number",
    ),
    (
        "timestamp-negative",
        "t.jsonl",
        (moon() + moon(-5)).encode(),
        "2: timestamp -5 is negative; give milliseconds from the trace start",
    ),
    (
        "azure-fraction-46.5e3",
        "t.csv",
        azure("2023-11-16 18:15:46.5e3,10,10").encode(),
        "3: TIMESTAMP '2023-11-16 18:15:46.5e3' is not 'YYYY-MM-DD HH:MM:SS[.fraction]'",
    ),
    (
        "timestamp-string",
        "t.jsonl",
        (moon() + moon('"27482"')).encode(),
        "2: timestamp must be a number of milliseconds, got '27482'; write it as an unquoted "
        "JSON number",
    ),
    (
        "timestamp-1e999-overflows-to-inf",
        "t.jsonl",
        (moon() + moon("1e999")).encode(),
        "2: timestamp must be finite, got inf; give milliseconds",
    ),
    # Our own.
    (
        "tokens-zero",
        "t.csv",
        azure("2023-11-16 18:15:47.0,0,10").encode(),
        "3: ContextTokens must be at least 1, got 0; a request has 1 or more tokens",
    ),
    (
        "tokens-negative",
        "t.csv",
        azure("2023-11-16 18:15:47.0,-5,10").encode(),
        "3: ContextTokens must be at least 1, got -5; a request has 1 or more tokens",
    ),
    (
        "tokens-fraction-csv",
        "t.csv",
        azure("2023-11-16 18:15:47.0,12.0,10").encode(),
        "3: ContextTokens must be an integer, got '12.0'; give a token count",
    ),
    (
        "tokens-underscore",
        "t.csv",
        azure("2023-11-16 18:15:47.0,1_000,10").encode(),
        "3: ContextTokens must be an integer, got '1_000'; give a token count",
    ),
    (
        "tokens-arabic-digits",
        "t.csv",
        azure("2023-11-16 18:15:47.0,\u0661\u0662,10").encode(),
        "3: ContextTokens must be an integer, got '\u0661\u0662'; give a token count",
    ),
    (
        "tokens-5000-digits",
        "t.csv",
        azure("2023-11-16 18:15:47.0," + "9" * 5000 + ",10").encode(),
        f"3: ContextTokens '{'9' * 36}... is above 10000000; fix the row",
    ),
    (
        "tokens-float-json",
        "t.jsonl",
        (moon() + moon(1, 12.5)).encode(),
        "2: input_length must be an integer, got 12.5; give a token count as a JSON integer",
    ),
    (
        "tokens-bool-json",
        "t.jsonl",
        (moon() + moon(1, "true")).encode(),
        "2: input_length must be an integer, got True; give a token count as a JSON integer",
    ),
    (
        "tokens-string-json",
        "t.jsonl",
        (moon() + moon(1, '"12"')).encode(),
        "2: input_length must be an integer, got '12'; give a token count as a JSON integer",
    ),
    (
        "output-missing",
        "t.jsonl",
        (moon() + '{"timestamp": 1, "input_length": 5}\n').encode(),
        "2: output_length must be an integer, got None; give a token count as a JSON integer",
    ),
    (
        "duplicate-json-key",
        "t.jsonl",
        (
            moon() + '{"timestamp": 1, "timestamp": 99999, "input_length": 5, "output_length": 5}\n'
        ).encode(),
        "2: key 'timestamp' appears twice; keep one",
    ),
    (
        "json-array-row",
        "t.jsonl",
        (moon() + "[1, 2, 3]\n").encode(),
        "2: expected a JSON object, got list",
    ),
    (
        "json-nested-deep",
        "t.jsonl",
        (moon() + "[" * 100_000 + "]" * 100_000 + "\n").encode(),
        "2: not a trace row (JSON nested too deeply)",
    ),
    (
        "json-integer-5000-digits",
        "t.jsonl",
        (moon() + moon("9" * 5000)).encode(),
        "2: not a trace row (Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit)",
    ),
    (
        "non-utf8-row",
        "t.csv",
        (HEADER + FIRST).encode() + b"2023-11-16 18:15:47.0,1\xff,1\n",
        "3: not UTF-8 (byte 0xff); save the trace as UTF-8 text",
    ),
    (
        "nul-byte",
        "t.csv",
        (HEADER + FIRST).encode() + b"2023-11-16 18:15:47.0,1\x00,1\n",
        "3: ContextTokens must be an integer, got '1\\x00'; give a token count",
    ),
    (
        "header-missing",
        "t.csv",
        FIRST.encode(),
        "1: expected the header line TIMESTAMP,ContextTokens,GeneratedTokens",
    ),
    (
        "empty-file",
        "t.csv",
        b"",
        "1: expected the header line TIMESTAMP,ContextTokens,GeneratedTokens",
    ),
    ("header-only", "t.csv", HEADER.encode(), " no requests; the trace needs at least one row"),
    ("empty-jsonl", "t.jsonl", b"\n\n", " no requests; the trace needs at least one row"),
    (
        "four-columns",
        "t.csv",
        azure("2023-11-16 18:15:47.0,1,1,1").encode(),
        "3: expected 3 columns, got 4",
    ),
    (
        "month-13",
        "t.csv",
        azure("2023-13-16 18:15:47.0,1,1").encode(),
        "3: TIMESTAMP '2023-13-16 18:15:47.0' is no calendar time (month must be in 1..12)",
    ),
    (
        "line-over-1-mib",
        "t.jsonl",
        (moon() + " " * (2 << 20) + "\n").encode(),
        "2: line longer than 1048576 bytes; not a trace row",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [pytest.param(n, c, m, id=case) for case, n, c, m in REFUSED],
)
def test_bad_rows_are_refused_with_the_line(
    tmp_path: Path, tally: Record, name: str, content: bytes, message: str
) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    expected = f"{f}:{message}"
    try:
        trace = load(f)
    except TraceError as e:
        outcome = "rejected clearly" if str(e) == expected else "unclear"
        tally("traces", outcome)
        assert str(e) == expected
        return
    except Exception:
        tally("traces", "crashed")
        raise
    tally("traces", "accepted silently")
    pytest.fail(f"accepted: {trace}")


def _read(tmp_path: Path, name: str, content: bytes) -> Trace:
    f = tmp_path / name
    f.write_bytes(content)
    return load(f)


def test_mooncake_exponent_timestamp_is_read_exactly(tmp_path: Path, tally: Record) -> None:
    t = _read(tmp_path, "t.jsonl", (moon(0) + moon("46.5e3")).encode())
    ok = t.arrival.tolist() == [0.0, 46.5]
    tally("traces", "read correctly" if ok else "accepted silently")
    assert ok, t.arrival


def test_azure_seven_fraction_digits_exact(tmp_path: Path, tally: Record) -> None:
    t = _read(tmp_path, "t.csv", azure("2023-11-16 18:15:46.0000001,1,1").encode())
    ok = t.arrival[1] == pytest.approx(1e-7, abs=1e-9)
    tally("traces", "read correctly" if ok else "accepted silently")
    assert ok, t.arrival


def test_bom_crlf_and_blank_lines(tmp_path: Path, tally: Record) -> None:
    text = "\ufeff" + azure("", "2023-11-16 18:15:48.5,7,3").replace("\n", "\r\n")
    t = _read(tmp_path, "t.csv", text.encode())
    ok = t.arrival.tolist() == [0.0, 2.5] and t.prompt.tolist() == [10, 7]
    tally("traces", "read correctly" if ok else "accepted silently")
    assert ok, t


def test_unsorted_rows_are_sorted_and_all_kept(tmp_path: Path, tally: Record) -> None:
    rows = [moon(ts, i=i + 1) for i, ts in enumerate([5000, 0, 2500, 2500, 100])]
    t = _read(tmp_path, "t.jsonl", "".join(rows).encode())
    ok = t.arrival.tolist() == [0.0, 0.1, 2.5, 2.5, 5.0] and t.prompt.tolist() == [2, 5, 3, 4, 1]
    tally("traces", "read correctly" if ok else "lost")
    assert ok, t


def test_epoch_millisecond_timestamps_are_relative(tmp_path: Path, tally: Record) -> None:
    t = _read(tmp_path, "t.jsonl", (moon(1_700_000_000_000) + moon(1_700_000_001_500)).encode())
    ok = t.arrival.tolist() == [0.0, 1.5]
    tally("traces", "read correctly" if ok else "accepted silently")
    assert ok, t.arrival


def test_a_sparse_trace_costs_memory_by_rows_not_span(tmp_path: Path, tally: Record) -> None:
    """Two rows 285 years apart: reading allocates for two rows; the bench refuses the span
    before allocating anything per second (tests/hostile/test_bench_cli.py)."""
    f = tmp_path / "sparse.jsonl"
    f.write_text(moon(0) + moon(9_000_000_000_000))
    tracemalloc.start()
    try:
        t = load(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ok = len(t) == 2 and peak < (1 << 20)  # 1 MiB: far above two rows, far below a span array
    tally("traces", "read correctly" if ok else "unclear")
    assert ok, peak


@pytest.mark.parametrize(
    ("rate_scale", "duration"),
    [(float("inf"), None), (float("nan"), None), (0.0, None), (1.0, float("nan")), (1.0, -5.0)],
)
def test_scaled_refuses_non_finite_or_non_positive(
    tally: Record, rate_scale: float, duration: float | None
) -> None:
    t = Trace("t", np.array([0.0, 1.0]), np.array([5, 5]), np.array([5, 5]))
    with pytest.raises(TraceError, match=r"must be a finite number") as caught:
        t.scaled(rate_scale, duration)
    tally("traces", "rejected clearly" if caught.value else "unclear")


def _replayed(arrivals_ms: list[float], tmp_path: Path, tally: Record) -> None:
    """Every request of the file is replayed and served: none counted as a miss for never
    having been sent (1 warm replica, tiny requests, far below its capacity)."""
    f = tmp_path / "t.jsonl"
    f.write_text("".join(moon(ts) for ts in arrivals_ms))
    trace = load(f)
    sc = Scenario()
    result = simulate(trace, sc, Static(1), 1)
    served = round(result.slo_attainment * len(trace)) + result.rejected
    tally("traces", "read correctly" if served == len(trace) else "lost")
    assert (result.slo_attainment, result.rejected) == (1.0, 0), result.row()


def test_request_after_the_last_sample_is_replayed(tmp_path: Path, tally: Record) -> None:
    """The issue's case: 0 and 21 000 ms gave 50% (the second never sent, counted missed)."""
    _replayed([0, 21_000], tmp_path, tally)


def test_request_on_the_last_sample_is_replayed(tmp_path: Path, tally: Record) -> None:
    _replayed([0, 20_000], tmp_path, tally)


def test_burst_in_the_final_two_seconds_is_replayed(tmp_path: Path, tally: Record) -> None:
    _replayed([0, *np.linspace(30_001, 31_999, 20).tolist()], tmp_path, tally)


def test_bench_prints_rows_and_span_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Record
) -> None:
    f = tmp_path / "two.jsonl"
    f.write_text(moon(0) + moon(21_000))
    parser = OneLineParser(prog="tokenscale bench")
    bench_cli.add_arguments(parser)
    args = parser.parse_args(["--trace", str(f), "--rate-scale", "1"])
    trace = bench_cli.load_trace(args, bench_cli.scenario_from(args))
    lines = capsys.readouterr().out.splitlines()
    expected = [f"read {f}: 2 requests over 21.0 s", "replaying two: 2 requests over 21.0 s"]
    tally("traces", "read correctly" if lines == expected and len(trace) == 2 else "unclear")
    assert lines == expected

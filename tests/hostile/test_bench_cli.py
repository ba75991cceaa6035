"""`tokenscale bench` on hostile options and trace files: refused before any replay starts, in
one line naming the option or the file and line and the fix, with the documented exit code
(2 usage, 3 infeasible, 4 bad input), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Record
from tests.hostile.harness import console, in_process, verdict
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.suite import ALL_POLICIES
from tokenscale.cli import main
from tokenscale.domain.capacity import Infeasible, plan

B = "tokenscale bench"
HELP = f"see `{B} --help`"
ROW = '{{"timestamp": {ts}, "input_length": 10, "output_length": 5}}\n'

# Trace files the cases name as {d}/<file>.
TRACES: dict[str, bytes] = {
    "nan.jsonl": (ROW.format(ts=0) + ROW.format(ts="NaN")).encode(),
    "infinity.jsonl": (ROW.format(ts=0) + ROW.format(ts="Infinity")).encode(),
    "1e15.jsonl": (ROW.format(ts=0) + ROW.format(ts="1e15")).encode(),
    "huge-tokens.csv": b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
    b"2023-11-16 18:15:46.1,18446744073709551616,10\n",
    "sparse.jsonl": (ROW.format(ts=0) + ROW.format(ts=9_000_000_000_000)).encode(),
    "one-64mib-line.csv": b"TIMESTAMP,ContextTokens,GeneratedTokens\n" + b"9" * (64 << 20),
    "notes.txt": b"hello\n",
    "dense.jsonl": "".join(ROW.format(ts=i) for i in range(10_000)).encode(),
    "two.jsonl": (ROW.format(ts=0) + ROW.format(ts=21000)).encode(),
}


def _number(option: str, text: str, bound: str) -> list[str]:
    return [f"{B}: error: argument {option}: {text!r}: give a finite number {bound}; {HELP}"]


def _integer(option: str, text: str, bound: str) -> list[str]:
    return [f"{B}: error: argument {option}: {text!r}: give an integer {bound}; {HELP}"]


def _planner_reason(model: str, gpu: str, quantization: str) -> str:
    """The planner's own words (the catalog's figures change; the CLI's framing must not)."""
    result = plan(Scenario(model=model, gpu=gpu, quantization=quantization).spec())
    assert isinstance(result, Infeasible), result
    return result.reason


RATE = "> 0 and <= 1000"
# (case, argv with {d} for the directory of TRACES, exit code, stderr lines)
CASES: list[tuple[str, list[str], int, list[str]]] = [
    # The cases.
    ("rate-scale-inf", ["--rate-scale", "inf"], 2, _number("--rate-scale", "inf", RATE)),
    ("duration-negative", ["--duration", "-5"], 2, _number("--duration", "-5", "> 0")),
    ("duration-nan", ["--duration", "nan"], 2, _number("--duration", "nan", "> 0")),
    (
        "trace-nan-timestamp",
        ["--trace", "{d}/nan.jsonl"],
        4,
        [f"{B}: {{d}}/nan.jsonl:2: NaN is not a number; give a finite value"],
    ),
    (
        "trace-infinity-timestamp",
        ["--trace", "{d}/infinity.jsonl"],
        4,
        [f"{B}: {{d}}/infinity.jsonl:2: Infinity is not a number; give a finite value"],
    ),
    (
        "trace-1e15-ms",
        ["--trace", "{d}/1e15.jsonl"],
        4,
        [
            f"{B}: {{d}}/1e15.jsonl:2: timestamp 1e+15 ms is beyond 1e+13 ms (317 years); "
            "give milliseconds from the trace start"
        ],
    ),
    (
        "trace-tokens-above-2-63",
        ["--trace", "{d}/huge-tokens.csv"],
        4,
        [
            f"{B}: {{d}}/huge-tokens.csv:2: ContextTokens 18446744073709551616 is above "
            "10000000 (no model has a context that long); fix the row"
        ],
    ),
    (
        "trace-64mib-line",
        ["--trace", "{d}/one-64mib-line.csv"],
        4,
        [f"{B}: {{d}}/one-64mib-line.csv:2: line longer than 1048576 bytes; not a trace row"],
    ),
    (
        "trace-sparse-span",
        ["--trace", "{d}/sparse.jsonl"],
        2,
        [
            f"{B}: sparse spans 104166.7 days (9000000000 s), above the 8.0 days (691200 s) a "
            "replay takes; pass --duration N (at most 691200) to replay the first N seconds"
        ],
    ),
    # Our own.
    ("rate-scale-nan", ["--rate-scale", "nan"], 2, _number("--rate-scale", "nan", RATE)),
    ("rate-scale-zero", ["--rate-scale", "0"], 2, _number("--rate-scale", "0", RATE)),
    ("rate-scale-negative", ["--rate-scale", "-1"], 2, _number("--rate-scale", "-1", RATE)),
    ("rate-scale-1e400", ["--rate-scale", "1e400"], 2, _number("--rate-scale", "1e400", RATE)),
    ("rate-scale-5000", ["--rate-scale", "5000"], 2, _number("--rate-scale", "5000", RATE)),
    (
        "rate-scale-word",
        ["--rate-scale", "six"],
        2,
        [f"{B}: error: argument --rate-scale: 'six' is not a number; {HELP}"],
    ),
    ("duration-zero", ["--duration", "0"], 2, _number("--duration", "0", "> 0")),
    ("duration-inf", ["--duration", "inf"], 2, _number("--duration", "inf", "> 0")),
    ("slo-ttft-zero", ["--slo-ttft", "0"], 2, _number("--slo-ttft", "0", "> 0")),
    ("slo-itl-negative", ["--slo-itl", "-0.05"], 2, _number("--slo-itl", "-0.05", "> 0")),
    (
        "slo-percentile-150",
        ["--slo-percentile", "150"],
        2,
        _number("--slo-percentile", "150", ">= 0 and <= 100"),
    ),
    (
        "slo-percentile-100-spec-bound",
        ["--slo-percentile", "100"],
        2,
        [
            f"{B}: --slo-percentile: spec.slo.percentile: Input should be less than or equal "
            "to 99.9 (got 100.0)"
        ],
    ),
    ("cold-start-negative", ["--cold-start", "-1"], 2, _number("--cold-start", "-1", ">= 0")),
    ("max-replicas-zero", ["--max-replicas", "0"], 2, _integer("--max-replicas", "0", ">= 1")),
    (
        "token-budget-under-the-floor",
        ["--max-num-batched-tokens", "100"],
        2,
        _integer("--max-num-batched-tokens", "100", ">= 256"),
    ),
    (
        "max-replicas-spec-bound",
        ["--max-replicas", "100000"],
        2,
        [
            f"{B}: --max-replicas: spec.scaling.maxReplicas: Input should be less than or "
            "equal to 1000 (got 100000)"
        ],
    ),
    ("seed-negative", ["--seed", "-1"], 2, _integer("--seed", "-1", ">= 0")),
    (
        "seed-fraction",
        ["--seed", "1.5"],
        2,
        [f"{B}: error: argument --seed: '1.5' is not an integer; give one >= 0; {HELP}"],
    ),
    (
        "policies-empty",
        ["--policies", ","],
        2,
        [f"{B}: --policies ',': no policy named; choose from {','.join(ALL_POLICIES)}"],
    ),
    (
        "policies-unknown",
        ["--policies", "tokenscale,bogus"],
        2,
        [
            f"{B}: --policies 'tokenscale,bogus': unknown bogus; choose from "
            f"{','.join(ALL_POLICIES)}"
        ],
    ),
    (
        "json-in-missing-directory",
        ["--json", "{d}/no/such/out.json"],
        2,
        [f"{B}: --json {{d}}/no/such/out.json: directory {{d}}/no/such does not exist; create it"],
    ),
    (
        "json-is-a-directory",
        ["--json", "{d}"],
        2,
        [f"{B}: --json {{d}}: is a directory; give a file name"],
    ),
    (
        "plot-in-missing-directory",
        ["--plot", "{d}/x/p.png"],
        2,
        [f"{B}: --plot {{d}}/x/p.png: directory {{d}}/x does not exist; create it"],
    ),
    (
        "trace-missing",
        ["--trace", "{d}/nope.csv"],
        4,
        [f"{B}: {{d}}/nope.csv: no such file; check the path"],
    ),
    (
        "trace-is-a-directory",
        ["--trace", "{d}"],
        4,
        [f"{B}: {{d}}: is a directory; give a trace file"],
    ),
    (
        "trace-unknown-format",
        ["--trace", "{d}/notes.txt"],
        4,
        [f"{B}: {{d}}/notes.txt: unknown trace format; use an Azure .csv or a Mooncake .jsonl"],
    ),
    (
        "rate-scale-makes-too-many-requests",
        ["--trace", "{d}/dense.jsonl", "--rate-scale", "1000"],
        2,
        [
            f"{B}: --rate-scale 1000 makes 10000 requests 10000000, above 5000000; lower "
            "--rate-scale or cut the trace with --duration"
        ],
    ),
    (
        "rate-scale-keeps-no-request",
        ["--trace", "{d}/two.jsonl", "--rate-scale", "0.001"],
        2,
        [
            f"{B}: --rate-scale 0.001 with --duration None keeps no request of two (2 "
            "requests over 21.0 s); raise them"
        ],
    ),
    (
        "check-targets-bad-azure-trace",
        ["--check-targets", "--azure-trace", "{d}/nan.jsonl", "--no-progress"],
        4,
        [f"{B}: {{d}}/nan.jsonl:2: NaN is not a number; give a finite value"],
    ),
    (
        "infeasible-scenario",
        ["--model", "llama-3.1-405b", "--gpu", "l4-24gb", "--quantization", "none"],
        3,
        [f"{B}: scenario does not fit: {_planner_reason('llama-3.1-405b', 'l4-24gb', 'none')}"],
    ),
    (
        "workload-unknown",
        ["--workload", "night"],
        2,
        [
            f"{B}: error: argument --workload: invalid choice: 'night' (choose from 'day', "
            f"'long-output'); {HELP}"
        ],
    ),
]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("traces")
    for name, content in TRACES.items():
        (d / name).write_bytes(content)
    return d


@pytest.mark.parametrize(
    ("argv", "code", "lines"),
    [pytest.param(a, code, lines, id=name) for name, a, code, lines in CASES],
)
def test_bench_refuses(
    traces: Path,
    capsys: pytest.CaptureFixture[str],
    tally: Record,
    argv: list[str],
    code: int,
    lines: list[str],
) -> None:
    outcome = in_process(main, ["bench", *[a.format(d=traces) for a in argv]], capsys)
    result = verdict(outcome, code, [line.format(d=traces) for line in lines])
    tally("bench CLI", result)
    assert result == "rejected clearly", outcome


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        pytest.param(["--rate-scale", "inf"], 2, _number("--rate-scale", "inf", RATE)[0], id="inf"),
        pytest.param(["--duration", "nan"], 2, _number("--duration", "nan", "> 0")[0], id="nan"),
        pytest.param(
            ["--trace", "{d}/nan.jsonl"],
            4,
            f"{B}: {{d}}/nan.jsonl:2: NaN is not a number; give a finite value",
            id="nan-trace",
        ),
    ],
)
def test_console_script(traces: Path, tally: Record, argv: list[str], code: int, line: str) -> None:
    outcome = console(["bench", *[a.format(d=traces) for a in argv]])
    result = verdict(outcome, code, [line.format(d=traces)])
    tally("bench CLI", result)
    assert result == "rejected clearly", outcome

"""`tokenscale plan` on hostile input: every refusal is one line per
problem naming the file and line (or the option) and the fix, with its documented exit code
(2 usage, 3 infeasible, 4 bad input), and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Record
from tests.hostile.harness import console, in_process, verdict
from tests.hostile.plan_cases import FILE_CASES, GOOD, GPU_CHOICES, HEAD, MODEL_CHOICES, P
from tokenscale.cli import main


@pytest.mark.parametrize(
    ("content", "code", "lines"),
    [pytest.param(c, code, lines, id=name) for name, c, code, lines in FILE_CASES],
)
def test_plan_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tally: Record,
    content: bytes,
    code: int,
    lines: list[str],
) -> None:
    f = tmp_path / "svc.yaml"
    f.write_bytes(content)
    outcome = in_process(main, ["plan", "-f", str(f)], capsys)
    result = verdict(outcome, code, [line.format(f=f) for line in lines])
    tally("plan CLI", result)
    assert result == "rejected clearly", outcome


# (case, argv with {d} for a temporary directory, exit code, stderr lines)
ARGV_CASES: list[tuple[str, list[str], int, list[str]]] = [
    (
        "missing-file",
        ["plan", "-f", "{d}/nope.yaml"],
        4,
        [f"{P}: {{d}}/nope.yaml: no such file; check the path"],
    ),
    (
        "directory",
        ["plan", "-f", "{d}"],
        4,
        [f"{P}: {{d}}: is a directory; give a manifest file (-f FILE)"],
    ),
    (
        "dev-zero",
        ["plan", "-f", "/dev/zero"],
        4,
        [f"{P}: /dev/zero: larger than 8388608 bytes; not a manifest"],
    ),
    (
        "two-missing-files-both-named",
        ["plan", "-f", "{d}/a.yaml", "-f", "{d}/b.yaml"],
        4,
        [
            f"{P}: {{d}}/a.yaml: no such file; check the path",
            f"{P}: {{d}}/b.yaml: no such file; check the path",
        ],
    ),
    ("empty-file-name", ["plan", "-f", ""], 2, [f"{P}: -f: empty file name; give a manifest path"]),
    (
        "bad-model",
        ["plan", "--model", "gpt-5", "--gpu", "h100-80gb"],
        2,
        [
            f"{P}: error: argument --model: invalid choice: 'gpt-5' (choose from "
            f"{MODEL_CHOICES}); see `{P} --help`"
        ],
    ),
    (
        "bad-gpu",
        ["plan", "--model", "llama-3.1-8b", "--gpu", "tpu"],
        2,
        [
            f"{P}: error: argument --gpu: invalid choice: 'tpu' (choose from {GPU_CHOICES}); "
            f"see `{P} --help`"
        ],
    ),
    (
        "model-without-gpu",
        ["plan", "--model", "llama-3.1-8b"],
        2,
        [f"{P}: give -f MANIFEST, or both --model and --gpu"],
    ),
    ("no-options", ["plan"], 2, [f"{P}: give -f MANIFEST, or both --model and --gpu"]),
    (
        "file-and-model",
        ["plan", "-f", "{d}/x.yaml", "--model", "llama-3.1-8b"],
        2,
        [f"{P}: give either -f MANIFEST or --model/--gpu, not both"],
    ),
    (
        "max-model-len-not-a-number",
        ["plan", "--model", "llama-3.1-8b", "--gpu", "l4-24gb", "--max-model-len", "8k"],
        2,
        [
            f"{P}: error: argument --max-model-len: '8k' is not an integer; give one >= 1; "
            f"see `{P} --help`"
        ],
    ),
    (
        "max-model-len-below-spec-bound",
        ["plan", "--model", "llama-3.1-8b", "--gpu", "l4-24gb", "--max-model-len", "10"],
        2,
        [
            f"{P}: --max-model-len: spec.model.maxModelLen: Input should be greater than or "
            "equal to 256 (got 10)"
        ],
    ),
    (
        "max-model-len-huge",
        ["plan", "--model", "llama-3.1-8b", "--gpu", "l4-24gb", "--max-model-len", "1" + "0" * 30],
        2,
        [
            f"{P}: --max-model-len: spec.model.maxModelLen: Input should be less than or "
            "equal to 1048576 (got 1000000000000000000000000000000)"
        ],
    ),
    (
        "bad-quantization",
        ["plan", "--model", "llama-3.1-8b", "--gpu", "l4-24gb", "--quantization", "int3"],
        2,
        [
            f"{P}: error: argument --quantization: invalid choice: 'int3' (choose from "
            f"'none', 'fp8', 'awq', 'gptq', 'int8', 'auto'); see `{P} --help`"
        ],
    ),
    (
        "unknown-option",
        ["plan", "--gpus", "8"],
        2,
        ["tokenscale: error: unrecognized arguments: --gpus 8; see `tokenscale --help`"],
    ),
    (
        "no-command",
        [],
        2,
        [
            "tokenscale: error: the following arguments are required: COMMAND; see "
            "`tokenscale --help`"
        ],
    ),
    (
        "run-port-out-of-range",
        ["run", "--health-port", "70000"],
        2,
        [
            "tokenscale run: error: argument --health-port: '70000': give an integer from 1 "
            "to 65535; see `tokenscale run --help`"
        ],
    ),
    (
        "infeasible-plan",
        ["plan", "--model", "llama-3.1-405b", "--gpu", "l4-24gb"],
        3,
        [],
    ),
]


@pytest.mark.parametrize(
    ("argv", "code", "lines"),
    [pytest.param(a, code, lines, id=name) for name, a, code, lines in ARGV_CASES],
)
def test_plan_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tally: Record,
    argv: list[str],
    code: int,
    lines: list[str],
) -> None:
    outcome = in_process(main, [a.format(d=tmp_path) for a in argv], capsys)
    result = verdict(outcome, code, [line.format(d=tmp_path) for line in lines])
    tally("plan CLI", result)
    assert result == "rejected clearly", outcome
    if code == 3:
        assert "feasible             False" in outcome.out


def test_yaml_merge_keys_are_not_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Record
) -> None:
    """`<<: *base` then an override is YAML's merge, not a repeated key: accepted."""
    f = tmp_path / "merge.yaml"
    f.write_text(
        HEAD + "metadata:\n  name: svc\nspec:\n  model: &m\n"
        "    source: hf://meta-llama/Llama-3.1-8B-Instruct\n    architecture: llama-3.1-8b\n"
        "  resources:\n    <<: {gpu: a100-80gb}\n    gpu: h100-80gb\n"
    )
    outcome = in_process(main, ["plan", "-f", str(f), "--json"], capsys)
    ok = outcome.code == 0 and '"gpu": "h100-80gb"' in outcome.out
    tally("plan CLI", "read correctly" if ok else verdict(outcome, 0, []))
    assert ok, outcome


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "content", "code", "line"),
    [
        pytest.param(
            ["plan", "-f", "{f}"],
            b"a: [\n",
            4,
            f"{P}: {{f}}:2:1: not valid YAML: expected the node content, but found "
            "'<stream end>' (while parsing a flow node); fix the syntax there",
            id="non-yaml",
        ),
        pytest.param(
            ["plan", "-f", "{f}"],
            (GOOD + "spec: {}\n").encode(),
            4,
            f"{P}: {{f}}:11:1: duplicate key 'spec' (first at line 5); keep only one",
            id="duplicate-key",
        ),
        pytest.param(
            ["plan", "-f", "{f}"],
            b"",
            4,
            f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest",
            id="empty",
        ),
        pytest.param(
            ["plan", "-f", "{f}.missing"],
            b"",
            4,
            f"{P}: {{f}}.missing: no such file; check the path",
            id="missing",
        ),
        pytest.param(
            ["plan", "--model", "llama-3.1-8b", "--gpu", "tpu"],
            b"",
            2,
            f"{P}: error: argument --gpu: invalid choice: 'tpu' (choose from {GPU_CHOICES}); "
            f"see `{P} --help`",
            id="bad-gpu",
        ),
    ],
)
def test_console_script(
    tmp_path: Path, tally: Record, argv: list[str], content: bytes, code: int, line: str
) -> None:
    """The real `tokenscale` executable: same message and exit code, no traceback."""
    f = tmp_path / "svc.yaml"
    f.write_bytes(content)
    outcome = console([a.format(f=f) for a in argv])
    result = verdict(outcome, code, [line.format(f=f)])
    tally("plan CLI", result)
    assert result == "rejected clearly", outcome


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["plan"], ["crds"], ["bench"], []):
        outcome = in_process(main, [*command, "--help"], capsys)
        assert outcome.code == 0
        text = " ".join(outcome.out.split())
        assert "2 usage error" in text and "3 no plan fits" in text and "4 bad input" in text


def test_405b_bf16_on_h100_prints_the_two_node_plan(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--model", "llama-3.1-405b", "--gpu", "h100-80gb", "--quantization", "none"]
    outcome = in_process(main, argv, capsys)
    assert outcome.code == 0, outcome
    rows = dict(line.split(None, 1) for line in outcome.out.splitlines()[1:] if line.strip())
    assert (rows["nodesPerReplica"], rows["tensorParallel"], rows["gpusPerReplica"]) == (
        "2",
        "8",
        "16",
    )
    assert "LeaderWorkerSet" in rows["notes"]

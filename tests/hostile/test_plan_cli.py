"""`tokenscale plan` and `tokenscale crds` on hostile input: every refusal is one line per
problem naming the file and line (or the option) and the fix, with its documented exit code
(2 usage, 3 infeasible, 4 bad input), and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Record
from tests.hostile.harness import console, in_process, verdict
from tokenscale.cli import main
from tokenscale.domain import catalog

P = "tokenscale plan"
MODEL_CHOICES = ", ".join(repr(m) for m in sorted(catalog.MODELS))
GPU_CHOICES = ", ".join(repr(g) for g in sorted(catalog.GPUS))
HEAD = "apiVersion: tokenscale.io/v1alpha1\nkind: InferenceService\n"
SPEC = (
    "spec:\n  model:\n    source: hf://meta-llama/Llama-3.1-8B-Instruct\n"
    "    architecture: llama-3.1-8b\n  resources:\n    gpu: h100-80gb\n"
)
GOOD = HEAD + "metadata:\n  name: svc\n" + SPEC
TAG = "!!python/object/apply:os.system"
NESTED = "[" * 100_000 + "]" * 100_000
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)

# (case, file content, exit code, stderr lines with {f} for the file's path)
FILE_CASES: list[tuple[str, bytes, int, list[str]]] = [
    # The cases.
    (
        "non-yaml",
        b"a: [\n",
        4,
        [
            f"{P}: {{f}}:2:1: not valid YAML: expected the node content, but found "
            "'<stream end>' (while parsing a flow node); fix the syntax there"
        ],
    ),
    (
        "non-utf8",
        b"apiVersion: v1\nkind: \xff\xfe\n",
        4,
        [f"{P}: {{f}}:2: not UTF-8 text (byte 0xff); save the file as UTF-8"],
    ),
    (
        "list-document",
        b"- a\n- b\n",
        4,
        [
            f"{P}: {{f}}:1: the document is a list; a manifest is a mapping with apiVersion, "
            "kind, metadata and spec"
        ],
    ),
    (
        "scalar-document",
        b"42\n",
        4,
        [
            f"{P}: {{f}}:1: the document is the scalar 42; a manifest is a mapping with "
            "apiVersion, kind, metadata and spec"
        ],
    ),
    (
        "missing-spec",
        (HEAD + "metadata:\n  name: svc\n").encode(),
        4,
        [f"{P}: {{f}}:1: InferenceService 'svc' has no spec; add spec.model"],
    ),
    (
        "metadata-null",
        (HEAD + "metadata: null\n" + SPEC).encode(),
        4,
        [f"{P}: {{f}}:1: metadata must be a mapping with a name; add metadata.name"],
    ),
    (
        "python-object-tag",
        f'{TAG} ["touch /tmp/pwned"]\n'.encode(),
        4,
        [f"{P}: {{f}}:1:1: YAML tag {TAG} is not allowed; write plain YAML values"],
    ),
    (
        "python-tag-inside-spec",
        (GOOD + "  image: !!python/name:os.system\n").encode(),
        4,
        [
            f"{P}: {{f}}:11:10: YAML tag !!python/name:os.system is not allowed; write plain "
            "YAML values"
        ],
    ),
    (
        "empty-file",
        b"",
        4,
        [f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest"],
    ),
    (
        "no-inferenceservice",
        b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n",
        4,
        [
            f"{P}: {{f}}: no InferenceService among 1 document(s) (kinds: Namespace); give a "
            "file with kind: InferenceService, apiVersion: tokenscale.io/v1alpha1"
        ],
    ),
    (
        "duplicate-top-level-key",
        (GOOD + "spec: {}\n").encode(),
        4,
        [f"{P}: {{f}}:11:1: duplicate key 'spec' (first at line 5); keep only one"],
    ),
    # Our own.
    (
        "duplicate-nested-key",
        (GOOD + "    gpu: a100-80gb\n").encode(),
        4,
        [f"{P}: {{f}}:11:5: duplicate key 'gpu' (first at line 10); keep only one"],
    ),
    (
        "comments-only",
        b"# nothing here\n\n# still nothing\n",
        4,
        [f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest"],
    ),
    (
        "null-documents",
        b"---\n---\n~\n",
        4,
        [f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest"],
    ),
    (
        "kserve-inferenceservice",
        b"apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n"
        b"  name: s\nspec: {}\n",
        4,
        [
            f"{P}: {{f}}:1: apiVersion 'serving.kserve.io/v1beta1' is not "
            "'tokenscale.io/v1alpha1'; this is not a tokenscale InferenceService"
        ],
    ),
    (
        "metadata-without-name",
        (HEAD + "metadata:\n  labels: {}\n" + SPEC).encode(),
        4,
        [f"{P}: {{f}}:1: metadata must be a mapping with a name; add metadata.name"],
    ),
    (
        "spec-null",
        (HEAD + "metadata:\n  name: svc\nspec: null\n").encode(),
        4,
        [
            f"{P}: {{f}}:5: spec: Input should be a valid dictionary or instance of "
            "InferenceServiceSpec (got None)"
        ],
    ),
    (
        "misspelled-field-and-bad-value",
        (
            GOOD.replace("    gpu: h100-80gb", "    gpux: h100-80gb").replace(
                "architecture: llama-3.1-8b", "architecture: llama-3.1-8b\n    maxModelLen: 10"
            )
        ).encode(),
        4,
        [
            f"{P}: {{f}}:9: spec.model.maxModelLen: Input should be greater than or equal "
            "to 256 (got 10)",
            f"{P}: {{f}}:11: spec.resources.gpu: required; add it",
            f"{P}: {{f}}:11: spec.resources.gpux: unknown field; remove it or correct its spelling",
        ],
    ),
    (
        "control-character",
        (GOOD + "# \x00\n").encode(),
        4,
        [f"{P}: {{f}}:11: character U+0000 is not allowed in YAML; remove it"],
    ),
    (
        "nested-100000-deep",
        NESTED.encode(),
        4,
        [f"{P}: {{f}}: nested too deeply to read; not a manifest"],
    ),
    (
        "billion-laughs",
        LAUGHS.encode(),
        4,
        [
            f"{P}: {{f}}: no InferenceService among 1 document(s) (kinds: None); give a file "
            "with kind: InferenceService, apiVersion: tokenscale.io/v1alpha1"
        ],
    ),
    (
        "tab-indentation",
        (HEAD + "metadata:\n\tname: svc\n").encode(),
        4,
        [
            f"{P}: {{f}}:4:1: not valid YAML: found character '\\t' that cannot start any "
            "token (while scanning for the next token); fix the syntax there"
        ],
    ),
    (
        "utf16-file",
        GOOD.encode("utf-16"),
        4,
        [f"{P}: {{f}}:1: not UTF-8 text (byte 0xff); save the file as UTF-8"],
    ),
    (
        "one-good-one-bad-document",
        (GOOD + "---\n" + HEAD + "metadata:\n  name: two\n").encode(),
        4,
        [f"{P}: {{f}}:12: InferenceService 'two' has no spec; add spec.model"],
    ),
    (
        "larger-than-8-mib",
        b"# " + b"x" * (8 * 1024 * 1024) + b"\n",
        4,
        [f"{P}: {{f}}: larger than 8388608 bytes; not a manifest"],
    ),
]


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


def _fake_root(tmp_path: Path) -> Path:
    (tmp_path / "charts" / "tokenscale").mkdir(parents=True)
    (tmp_path / "charts" / "tokenscale" / "Chart.yaml").write_text("name: tokenscale\n")
    return tmp_path


C = "tokenscale crds"
CRD = "crds/tokenscale.io_inferenceservices.yaml"


def _crd_is_a_directory(root: Path) -> None:
    (root / CRD).mkdir(parents=True)


def _crd_not_utf8(root: Path) -> None:
    (root / "crds").mkdir()
    (root / CRD).write_bytes(b"\xff\xfe")


def _nothing(root: Path) -> None:
    del root


@pytest.mark.parametrize(
    ("argv", "break_root", "code", "line"),
    [
        pytest.param(
            ["--root", "{d}/missing"],
            _nothing,
            2,
            f"{C}: --root {{d}}/missing: no such directory; pass the repository root",
            id="root-missing",
        ),
        pytest.param(
            ["--root", "{d}/charts/tokenscale/Chart.yaml"],
            _nothing,
            2,
            f"{C}: --root {{d}}/charts/tokenscale/Chart.yaml: no such directory; pass the "
            "repository root",
            id="root-is-a-file",
        ),
        pytest.param(
            ["--root", "{d}/charts"],
            _nothing,
            2,
            f"{C}: --root {{d}}/charts: not the tokenscale repository (no "
            "charts/tokenscale/Chart.yaml); run from the repository root or pass --root PATH",
            id="root-not-the-repository",
        ),
        pytest.param(
            ["--root", "{d}"],
            _crd_is_a_directory,
            4,
            f"{C}: {{d}}/{CRD}: cannot read (Is a directory); remove it and run `make generate`",
            id="generated-path-is-a-directory",
        ),
        pytest.param(
            ["--check", "--root", "{d}"],
            _crd_not_utf8,
            4,
            f"{C}: {{d}}/{CRD}: cannot read (not UTF-8); remove it and run `make generate`",
            id="generated-file-not-utf8",
        ),
    ],
)
def test_crds_bad_paths(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tally: Record,
    argv: list[str],
    break_root: object,
    code: int,
    line: str,
) -> None:
    root = _fake_root(tmp_path)
    assert callable(break_root)
    break_root(root)
    outcome = in_process(main, ["crds", *[a.format(d=root) for a in argv]], capsys)
    result = verdict(outcome, code, [line.format(d=root)])
    tally("plan CLI", result)
    assert result == "rejected clearly", outcome


def test_crds_writes_into_a_fresh_repository_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Record
) -> None:
    root = _fake_root(tmp_path)
    outcome = in_process(main, ["crds", "--root", str(root)], capsys)
    ok = outcome.code == 0 and (root / CRD).read_text().startswith("# GENERATED")
    tally("plan CLI", "read correctly" if ok else verdict(outcome, 0, []))
    assert ok, outcome


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
        pytest.param(
            ["crds", "--root", "{f}"],
            b"",
            2,
            f"{C}: --root {{f}}: no such directory; pass the repository root",
            id="crds-root-a-file",
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

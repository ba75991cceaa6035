"""`tokenscale crds` on bad paths: refused in one line naming the path and the fix, exit 2 for a
wrong --root and 4 for a generated file that cannot be read or written; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Record
from tests.hostile.harness import console, in_process, verdict
from tokenscale.cli import main


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
    tally("crds CLI", result)
    assert result == "rejected clearly", outcome


def test_crds_writes_into_a_fresh_repository_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Record
) -> None:
    root = _fake_root(tmp_path)
    outcome = in_process(main, ["crds", "--root", str(root)], capsys)
    ok = outcome.code == 0 and (root / CRD).read_text().startswith("# GENERATED")
    tally("crds CLI", "read correctly" if ok else verdict(outcome, 0, []))
    assert ok, outcome


@pytest.mark.integration
def test_console_script_root_is_a_file(tmp_path: Path, tally: Record) -> None:
    f = tmp_path / "file"
    f.write_text("")
    outcome = console(["crds", "--root", str(f)])
    result = verdict(outcome, 2, [f"{C}: --root {f}: no such directory; pass the repository root"])
    tally("crds CLI", result)
    assert result == "rejected clearly", outcome

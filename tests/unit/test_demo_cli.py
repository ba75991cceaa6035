"""`tokenscale demo`: runs the e2e demo from a source checkout only, and says so elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tokenscale.cli import build_parser
from tokenscale.cli.demo import CLUSTER_UP, DEMO_MODULE, demo_command, source_checkout
from tokenscale.cli.usage import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]


def checkout(folder: Path, *files: Path) -> Path:
    for f in files:
        (folder / f).parent.mkdir(parents=True, exist_ok=True)
        (folder / f).write_text("")
    return folder


def test_this_repository_is_a_checkout_the_demo_runs_from() -> None:
    assert source_checkout([ROOT]) == ROOT


def test_a_folder_needs_both_the_demo_and_the_cluster_scripts(tmp_path: Path) -> None:
    only_demo = checkout(tmp_path / "a", DEMO_MODULE)
    only_cluster = checkout(tmp_path / "b", CLUSTER_UP)
    both = checkout(tmp_path / "c", DEMO_MODULE, CLUSTER_UP)
    assert source_checkout([only_demo, only_cluster]) is None
    assert source_checkout([tmp_path / "missing", only_demo, both]) == both


def test_the_command_is_the_demo_module_with_an_absolute_out(tmp_path: Path) -> None:
    argv = demo_command(Path("out/x"), plain=True)
    assert argv[:3] == [sys.executable, "-m", "e2e.demo"]
    assert argv[3] == "--out" and Path(argv[4]).is_absolute() and argv[4].endswith("out/x")
    assert argv[5:] == ["--plain"]
    assert "--plain" not in demo_command(tmp_path, plain=False)


def test_parser_knows_demo_and_refuses_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["demo", "--plain", "--out", "somewhere"])
    assert (args.command, args.plain, args.out) == ("demo", True, Path("somewhere"))
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["demo", "--fast"])
    assert exit_.value.code == EXIT_USAGE
    assert "--fast" in capsys.readouterr().err

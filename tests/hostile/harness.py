"""Running a CLI on hostile input, in process or as the real console script, and judging it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "tokenscale"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    escaped: BaseException | None = None


def in_process(
    main: Callable[[list[str]], int], argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> Outcome:
    """main(argv) with output captured; an exception that escapes main is kept, not raised."""
    escaped: BaseException | None = None
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors and --help
        code = e.code if isinstance(e.code, int) else 1
    except Exception as e:
        code, escaped = -1, e
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err, escaped)


def console(argv: Sequence[str], cwd: Path | None = None) -> Outcome:
    """The installed `tokenscale` console script as a subprocess."""
    done = subprocess.run(
        [str(SCRIPT), *argv], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def verdict(outcome: Outcome, code: int, lines: Sequence[str]) -> str:
    """'rejected clearly' when the exit code is `code` and stderr is exactly `lines`."""
    if outcome.escaped is not None or "Traceback" in outcome.err:
        return "crashed"
    if outcome.code == 0:
        return "accepted silently"
    if outcome.code == code and outcome.err.splitlines() == list(lines):
        return "rejected clearly"
    return "unclear"

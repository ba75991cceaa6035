"""`tokenscale crds`: write the generated CRD and chart templates, or check them for drift."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from tokenscale.api import crdgen
from tokenscale.cli.usage import (
    EXIT_CODES_HELP,
    EXIT_DRIFT,
    EXIT_USAGE,
    CliError,
    Subcommands,
    fail,
)

PROG = "tokenscale crds"
# The file that marks a repository root: the chart the CRD template is written into.
ROOT_MARKER = Path("charts") / "tokenscale" / "Chart.yaml"


def add_parser(sub: Subcommands) -> None:
    crds = sub.add_parser(
        "crds",
        help="generate crds/ and the chart's CRD templates from the API models",
        description="Generate the InferenceService CRD from the pydantic models into crds/ and "
        "charts/tokenscale/templates/crds/. With --check, write nothing and exit 1 on drift.",
        epilog=EXIT_CODES_HELP,
    )
    crds.add_argument("--check", action="store_true", help="exit 1 if generated files drifted")
    crds.add_argument(
        "--root", type=Path, default=Path("."), help="repository root (default: current dir)"
    )


def generated_files(root: Path) -> dict[Path, str]:
    """Every generated file and its expected content."""
    return {
        root / "crds" / "tokenscale.io_inferenceservices.yaml": crdgen.crd_yaml(),
        root / "charts" / "tokenscale" / "templates" / "crds" / "inferenceservices.yaml": (
            crdgen.chart_crd_template()
        ),
    }


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise CliError(f"--root {root}: no such directory; pass the repository root", EXIT_USAGE)
    if not (root / ROOT_MARKER).is_file():
        raise CliError(
            f"--root {root}: not the tokenscale repository (no {ROOT_MARKER}); "
            "run from the repository root or pass --root PATH",
            EXIT_USAGE,
        )


def _current(path: Path) -> str:
    if not path.exists():
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise CliError(
            f"{path}: cannot read ({reason}); remove it and run `make generate`"
        ) from None


def _write(path: Path, content: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    except OSError as e:
        raise CliError(f"{path}: cannot write ({e.strerror}); check that path") from None


def _sync(args: argparse.Namespace) -> int:
    _check_root(args.root)
    drifted = 0
    for path, content in generated_files(args.root).items():
        current = _current(path)
        if current == content:
            continue
        if args.check:
            drifted += 1
            diff = difflib.unified_diff(
                current.splitlines(), content.splitlines(), str(path), "generated", lineterm=""
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
            continue
        _write(path, content)
        print(f"wrote {path}")
    if drifted:
        print(
            f"{drifted} generated file(s) out of date: run `make generate` and commit",
            file=sys.stderr,
        )
        return EXIT_DRIFT
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _sync(args)
    except CliError as e:
        return fail(PROG, e)

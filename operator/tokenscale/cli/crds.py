"""`tokenscale crds`: write the generated CRD and chart templates, or check them for drift."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from tokenscale.api import crdgen


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crds = sub.add_parser(
        "crds",
        help="generate crds/ and the chart's CRD templates from the API models",
        description="Generate the InferenceService CRD from the pydantic models into crds/ and "
        "charts/tokenscale/templates/crds/. With --check, write nothing and exit 1 on drift.",
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


def run(args: argparse.Namespace) -> int:
    drifted = 0
    for path, content in generated_files(args.root).items():
        current = path.read_text() if path.exists() else ""
        if current == content:
            continue
        if args.check:
            drifted += 1
            diff = difflib.unified_diff(
                current.splitlines(), content.splitlines(), str(path), "generated", lineterm=""
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path}")
    if drifted:
        print(
            f"{drifted} generated file(s) out of date: run `make generate` and commit",
            file=sys.stderr,
        )
        return 1
    return 0

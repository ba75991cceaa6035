"""`tokenscale demo`: the live demo on the local cluster (docs/demo.md), from a source checkout.

The demo drives the e2e harness (e2e/demo/, with the local cluster scripts, the fleet emulator
and the load generator), which the wheel does not ship and the operator package never imports:
this command finds the checkout it was installed from and replaces itself with
`python -m e2e.demo` there, so Ctrl-C and the exit status are the demo's own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from tokenscale.cli.usage import EXIT_USAGE, Subcommands

PROG = "tokenscale demo"
# What makes a folder a checkout the demo can run from.
DEMO_MODULE = Path("e2e") / "demo" / "run.py"
CLUSTER_UP = Path("e2e") / "cluster" / "up.sh"


def add_parser(sub: Subcommands) -> None:
    cmd = sub.add_parser(
        "demo",
        help="watch the operator scale one service on the local cluster through a scripted "
        "calm -> burst -> calm day (source checkout, after `make setup`)",
        description="Start (or reuse) the local cluster, a real Prometheus, the operator, one "
        "InferenceService and its simulator workers; play calm -> burst -> calm (4 minutes) and "
        "show load, replicas, cap, TTFT/ITL against the objective and every decision live; end "
        "with a summary and a PNG timeline. Needs a source checkout after `make setup` "
        "(`make demo-live` does both). Ctrl-C stops everything and deletes the demo namespace.",
        epilog="exit status: 0 the day ran, 1 the set-up failed (the message says what), "
        "2 usage error or not a source checkout, 130 interrupted",
    )
    cmd.add_argument(
        "--out",
        type=Path,
        default=Path("out") / "demo-live",
        help="folder for timeline.png, summary.json and the logs (default: out/demo-live)",
    )
    cmd.add_argument(
        "--plain", action="store_true", help="plain lines even on a terminal (for a transcript)"
    )


def source_checkout(candidates: Iterable[Path]) -> Path | None:
    """The first candidate folder holding the demo and the cluster scripts, if any."""
    for folder in candidates:
        if (folder / DEMO_MODULE).is_file() and (folder / CLUSTER_UP).is_file():
            return folder
    return None


def demo_command(out: Path, plain: bool) -> list[str]:
    """The argument list the command becomes (never a shell line)."""
    return [
        sys.executable,
        "-m",
        "e2e.demo",
        "--out",
        str(out.resolve()),
        *(["--plain"] if plain else []),
    ]


def run(args: argparse.Namespace) -> int:
    # An editable install (`make setup`) imports this file from <checkout>/operator/tokenscale/cli.
    installed_from = Path(__file__).resolve().parents[3]
    root = source_checkout([installed_from, Path.cwd()])
    if root is None:
        print(
            f"{PROG}: needs a source checkout (it drives the e2e harness in e2e/, which the "
            "installed package does not ship); clone the repository and run `make demo-live` "
            "there",
            file=sys.stderr,
        )
        return EXIT_USAGE
    argv = demo_command(args.out, args.plain)
    os.chdir(root)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else str(root)}
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)  # pragma: no cover - replaces this process

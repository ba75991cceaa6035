"""`tokenscale`: run the operator, generate CRDs, plan capacity, benchmark autoscaling."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tokenscale.cli import crds as cli_crds
from tokenscale.cli import demo as cli_demo
from tokenscale.cli import plan as cli_plan
from tokenscale.cli import render as cli_render
from tokenscale.cli.usage import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    OneLineParser,
    Subcommands,
    integer,
)


def _add_run(sub: Subcommands) -> None:
    run = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the operator against the cluster in the current kubeconfig (or the "
        "in-cluster service account).",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (default)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="compute and log everything, send writes with dryRun=All (nothing changes)",
    )
    run.add_argument(
        "--health-port",
        type=integer(1, 65535),
        default=8080,
        help="port of the liveness endpoint /healthz (default 8080)",
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log level (default: TOKENSCALE_LOG_LEVEL, else info)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text for a terminal, json (one object per line) for a log pipeline "
        "(default: TOKENSCALE_LOG_FORMAT, else text)",
    )
    run.add_argument("--verbose", action="store_true", help="same as --log-level debug")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tokenscale",
        description="tokenscale runs vLLM inference services on Kubernetes and holds each to its "
        "latency objective at the lowest GPU cost.",
        epilog=EXIT_CODES_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    cli_crds.add_parser(sub)
    cli_plan.add_parser(sub)
    cli_render.add_parser(sub)
    _add_bench(sub)
    cli_demo.add_parser(sub)
    return parser


def _add_bench(sub: Subcommands) -> None:
    try:
        from tokenscale.bench import cli as bench_cli
    except ImportError:  # the benchmark needs the optional `bench` extra (numpy, matplotlib)
        return
    bench = sub.add_parser(
        "bench",
        help="replay a request trace through simulated replicas under each autoscaling policy",
        description="Trace-replay benchmark: SLO attainment and GPU-hours per autoscaling policy.",
        epilog=EXIT_CODES_HELP,
    )
    bench_cli.add_arguments(bench)


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    from tokenscale.adapters import logs, metrics
    from tokenscale.adapters.settings import AutoscaleSettings, LogSettings
    from tokenscale.handlers import autoscale, children, lifecycle, runtime, startup

    del autoscale, children, lifecycle, startup  # imported for their handler registrations
    try:  # fail fast, in one line naming the malformed variable
        log_settings = LogSettings.resolve(
            "debug" if args.verbose else args.log_level, args.log_format
        )
        settings = AutoscaleSettings.from_env()
    except ValueError as exc:
        print(f"tokenscale run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(log_settings.level, log_settings.format)
    metrics.serve(settings.metrics_port)
    kopf.run(
        memo=kopf.Memo(registry=runtime.Registry(dry_run=args.dry_run)),
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=list(args.namespace),
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # `tokenscale plan ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{build_parser().prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run_operator(args)
    if args.command == "crds":
        return cli_crds.run(args)
    if args.command == "plan":
        return cli_plan.run(args)
    if args.command == "render":
        return cli_render.run(args)
    if args.command == "demo":
        return cli_demo.run(args)
    if args.command == "bench":
        from tokenscale.bench import cli as bench_cli

        return int(bench_cli.run(args))
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

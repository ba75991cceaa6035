"""`tokenscale bench`: replay a trace (or the embedded day) under each policy and compare.

tokenscale bench                                  # embedded default workload, all policies
tokenscale bench --trace AzureLLMInferenceTrace_conv.csv --rate-scale 6
tokenscale bench --policies tokenscale,oracle --batch-tuning off --json out.json --plot out.png
tokenscale bench --workload long-output --batch-tuning off   # where the live batch cap matters
tokenscale bench --check-targets                  # the issue's targets; non-zero on a miss
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tokenscale.bench import report
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.suite import ALL_POLICIES, run_suite
from tokenscale.bench.traces import Trace, TraceError, load
from tokenscale.bench.workload import WORKLOADS
from tokenscale.domain import catalog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Scenario()
    parser.add_argument(
        "--trace",
        help="Azure LLM inference .csv or Mooncake .jsonl trace; "
        "default: the embedded compressed-day workload",
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="day",
        help="embedded workload when no --trace is given: day (conversation lengths) or "
        "long-output (short prompts, long answers)",
    )
    parser.add_argument(
        "--rate-scale",
        type=float,
        default=None,
        help="multiply the request rate (default 1 for the embedded workload, 6 for a trace file)",
    )
    parser.add_argument("--duration", type=float, default=None, help="replay the first N seconds")
    parser.add_argument("--model", default=d.model, choices=sorted(catalog.MODELS))
    parser.add_argument("--gpu", default=d.gpu, choices=sorted(catalog.GPUS))
    parser.add_argument("--quantization", default=d.quantization, choices=sorted(catalog.QUANTS))
    parser.add_argument("--slo-ttft", type=float, default=d.ttft_s, help="TTFT objective, s")
    parser.add_argument("--slo-itl", type=float, default=d.itl_s, help="ITL objective, s")
    parser.add_argument("--slo-percentile", type=float, default=d.percentile)
    parser.add_argument("--cold-start", type=float, default=d.cold_start_s, help="seconds")
    parser.add_argument("--max-replicas", type=int, default=d.max_replicas)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--policies",
        default=",".join(ALL_POLICIES),
        help=f"comma-separated subset of {','.join(ALL_POLICIES)}",
    )
    parser.add_argument(
        "--batch-tuning",
        choices=("on", "off"),
        default="on",
        help="off: also run tokenscale with the live batch cap off",
    )
    parser.add_argument("--json", dest="json_path", help="write results as JSON here")
    parser.add_argument("--plot", help="write a PNG plot here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--check-targets",
        action="store_true",
        help="run the standard scenario on the embedded workload and the Azure "
        "trace and exit non-zero when a target is missed",
    )
    parser.add_argument(
        "--azure-trace", default=None, help="Azure conversation trace for --check-targets"
    )


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        model=args.model,
        gpu=args.gpu,
        quantization=args.quantization,
        ttft_s=args.slo_ttft,
        itl_s=args.slo_itl,
        percentile=args.slo_percentile,
        cold_start_s=args.cold_start,
        max_replicas=args.max_replicas,
        seed=args.seed,
    )


def load_trace(args: argparse.Namespace, scenario: Scenario) -> Trace:
    if args.trace:
        base = load(args.trace)
        scale = 6.0 if args.rate_scale is None else args.rate_scale
    else:
        base = WORKLOADS[args.workload](args.seed)
        scale = 1.0 if args.rate_scale is None else args.rate_scale
    return base.scaled(scale, args.duration, scenario.max_model_len)


def run(args: argparse.Namespace) -> int:
    if args.check_targets:
        from tokenscale.bench.targets import check

        return check(args)
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ALL_POLICIES))
    if unknown:
        print(f"unknown policies {unknown}; choose from {', '.join(ALL_POLICIES)}", file=sys.stderr)
        return 2
    scenario = scenario_from(args)
    try:
        trace = load_trace(args, scenario)
        scenario.plan  # noqa: B018  (fail early with the planner's reason)
    except (TraceError, ValueError, OSError) as e:
        print(f"tokenscale bench: {e}", file=sys.stderr)
        return 2
    results = run_suite(scenario, trace, names, args.batch_tuning == "off", not args.no_progress)
    print(
        f"{trace.name}: {len(trace)} requests over {trace.duration / 60:.0f} min, "
        f"{scenario.model} {scenario.quantization} on "
        f"{scenario.plan.gpus_per_replica}x{scenario.gpu}"
    )
    print(report.table(results))
    meta = {**scenario.describe(), "trace": trace.name, "requests": len(trace)}
    if args.json_path:
        report.write_json(args.json_path, meta, results)
    if args.plot:
        counts = np.bincount((trace.arrival // 60).astype(np.int64)).tolist()
        report.plot(
            args.plot, f"{trace.name} — {scenario.model} on {scenario.gpu}", counts, results
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokenscale bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))

"""`tokenscale bench`: replay a trace (or the embedded day) under each policy and compare.

tokenscale bench                                  # embedded default workload, all policies
tokenscale bench --trace AzureLLMInferenceTrace_conv.csv --rate-scale 6
tokenscale bench --policies tokenscale,kpa --batch-tuning off --json out.json --plot out.png
tokenscale bench --workload long-output --batch-tuning off   # where the live batch cap matters
tokenscale bench --check-targets                  # the issue's targets; non-zero on a miss
tokenscale bench --scenario multinode-405b --rate-scale 0.25   # 405B bf16, 2x8 H100 groups
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import ValidationError

from tokenscale.bench import report
from tokenscale.bench.scenario import SCENARIOS, Scenario
from tokenscale.bench.suite import ALL_POLICIES, run_suite
from tokenscale.bench.traces import Trace, TraceError, load, span_text
from tokenscale.bench.workload import WORKLOADS
from tokenscale.cli.usage import (
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_INFEASIBLE,
    EXIT_USAGE,
    CliError,
    OneLineParser,
    fail,
    integer,
    number,
    validation_lines,
    writable_file,
)
from tokenscale_contract import catalog

PROG = "tokenscale bench"
# The replay steps every 2 s and ticks every 15 s through the whole span, so time and the
# per-tick series grow with the span: a week-long trace (the Azure 2024 traces) is the most it
# takes; a longer or sparser one is cut with --duration.
MAX_SPAN_S = 8 * 86400.0
# Memory grows with the replayed requests (trace rows x --rate-scale): ~100 bytes each.
MAX_REQUESTS = 5_000_000
MAX_RATE_SCALE = 1000.0
# The scenario field each option fills, to name the option in a refusal.
OPTION_OF_FIELD = {
    "slo.ttftSeconds": "--slo-ttft",
    "slo.itlSeconds": "--slo-itl",
    "slo.percentile": "--slo-percentile",
    "scaling.coldStartSeconds": "--cold-start",
    "scaling.maxReplicas": "--max-replicas",
    "scaling": "--max-replicas",
}
# Options that override a field of the chosen --scenario (None: the scenario's own value).
SCENARIO_FIELDS = {
    "model": "model",
    "gpu": "gpu",
    "quantization": "quantization",
    "slo_ttft": "ttft_s",
    "slo_ttft_per_1k": "ttft_per_1k_s",
    "slo_itl": "itl_s",
    "slo_percentile": "percentile",
    "cold_start": "cold_start_s",
    "max_replicas": "max_replicas",
    "max_num_batched_tokens": "max_num_batched_tokens",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d, m = SCENARIOS["standard"], SCENARIOS["multinode-405b"]
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="standard",
        help=f"standard: Llama-3.1-70B fp8 on 2 H100 per replica, TTFT {d.ttft_s:g} s, ITL "
        f"{d.itl_s * 1000:g} ms, cold start {d.cold_start_s:g} s; multinode-405b: "
        f"Llama-3.1-405B bf16 on groups of 2 nodes x 8 H100 (16 GPUs a replica), TTFT "
        f"{m.ttft_s:g} s, ITL {m.itl_s * 1000:g} ms, a node's cold start its shard's read "
        f"plus warm-up ({m.cold_start_s:g} s), the group's {m.rendezvous_s:g} s later "
        "(docs/benchmarks.md). The options below override the scenario's fields",
    )
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
        type=number(0.0, MAX_RATE_SCALE, low_open=True),
        default=None,
        help="multiply the request rate (default 1 for the embedded workload, 6 for a trace file)",
    )
    parser.add_argument(
        "--duration",
        type=number(0.0, low_open=True),
        default=None,
        help="replay the first N seconds",
    )
    mine = "default: the scenario's, standard's"
    parser.add_argument("--model", choices=sorted(catalog.MODELS), help=f"{mine} ({d.model})")
    parser.add_argument("--gpu", choices=sorted(catalog.GPUS), help=f"{mine} ({d.gpu})")
    parser.add_argument(
        "--quantization", choices=sorted(catalog.QUANTS), help=f"{mine} ({d.quantization})"
    )
    positive = number(0.0, low_open=True)
    parser.add_argument(
        "--slo-ttft", type=positive, help=f"TTFT objective, s; {mine} ({d.ttft_s:g})"
    )
    parser.add_argument(
        "--slo-ttft-per-1k",
        type=number(0.0, 60.0),
        help="a length-aware TTFT objective: seconds more per 1000 prompt tokens "
        f"(spec.slo.ttftSecondsPer1kPromptTokens); {mine} ({d.ttft_per_1k_s:g})",
    )
    parser.add_argument("--slo-itl", type=positive, help=f"ITL objective, s; {mine} ({d.itl_s:g})")
    parser.add_argument(
        "--slo-percentile", type=number(0.0, 100.0), help=f"{mine} ({d.percentile:g})"
    )
    parser.add_argument(
        "--cold-start",
        type=number(0.0),
        help=f"seconds from a pod's creation to serving (a multi-node replica's nodes each, "
        f"the group adds the rendezvous); {mine} ({d.cold_start_s:g})",
    )
    parser.add_argument("--max-replicas", type=integer(1), help=f"{mine} ({d.max_replicas})")
    parser.add_argument(
        "--max-num-batched-tokens",
        type=integer(256),
        help="the per-step token budget (spec.engine.maxNumBatchedTokens) for every policy and "
        "the bound; default: the planner's (the ITL objective's, vLLM's 8192 where that is "
        "larger)",
    )
    parser.add_argument("--seed", type=integer(0), default=d.seed)
    parser.add_argument(
        "--world",
        choices=("known", "drawn"),
        default=d.world,
        help="drawn: per run, hardware speed within +/-25%% of the planner's roofline, "
        "step-to-step noise, long-tailed cold starts, and signals read as Prometheus gives them "
        "(vLLM's histograms, one scrape late), none told to the policy; and clients that time "
        "out after 60 s, 2%% that cancel mid-answer, 429s at the gateway's queue bound retried "
        "twice (docs/benchmarks.md)",
    )
    parser.add_argument(
        "--prefix-hit-rate",
        type=number(0.0, 0.99),
        default=d.prefix_hit_rate,
        help="share of every prompt found in the prefix cache, for traces without Mooncake "
        "hash_ids (those are cached per replica by their block ids)",
    )
    parser.add_argument(
        "--histogram-buckets",
        choices=("objective", "vllm"),
        default=d.buckets,
        help="drawn world: the latency buckets the engines export, the operator's (fine around "
        "the objectives, the default) or vLLM's own (25/50/75 ms)",
    )
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
    """The --scenario (standard when absent) with the options given over its fields."""
    base = SCENARIOS[getattr(args, "scenario", None) or "standard"]
    given: dict[str, Any] = {
        field: getattr(args, option)
        for option, field in SCENARIO_FIELDS.items()
        if getattr(args, option, None) is not None
    }
    return replace(
        base,
        **given,
        seed=args.seed,
        world=args.world,
        buckets=args.histogram_buckets,
        prefix_hit_rate=args.prefix_hit_rate,
    )


def _bounded(base: Trace, scale: float, duration: float | None) -> None:
    """Refuse, before allocating anything for it, a replay too large for memory or time."""
    if len(base) * scale > MAX_REQUESTS:
        raise CliError(
            f"--rate-scale {scale:g} makes {len(base)} requests {math.ceil(len(base) * scale)}, "
            f"above {MAX_REQUESTS}; lower --rate-scale or cut the trace with --duration",
            EXIT_USAGE,
        )
    span = min(base.duration, duration) if duration is not None else base.duration
    if span > MAX_SPAN_S:
        raise CliError(
            f"{base.name} spans {span_text(base.duration)}, above the {span_text(MAX_SPAN_S)} "
            f"a replay takes; pass --duration N (at most {MAX_SPAN_S:.0f}) to replay the first "
            "N seconds",
            EXIT_USAGE,
        )


def load_trace(args: argparse.Namespace, scenario: Scenario) -> Trace:
    if args.trace:
        try:
            base = load(args.trace)
        except TraceError as e:
            raise CliError(str(e), EXIT_BAD_INPUT) from None
        scale = 6.0 if args.rate_scale is None else args.rate_scale
        print(f"read {args.trace}: {base.summary()}")
    else:
        base = WORKLOADS[args.workload](args.seed)
        scale = 1.0 if args.rate_scale is None else args.rate_scale
    _bounded(base, scale, args.duration)
    trace = base.scaled(scale, args.duration, scenario.max_model_len)
    if not len(trace):
        raise CliError(
            f"--rate-scale {scale:g} with --duration {args.duration} keeps no request of "
            f"{base.name} ({base.summary()}); raise them",
            EXIT_USAGE,
        )
    print(f"replaying {trace.name}: {trace.summary()}")
    return trace


def _policy_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_POLICIES]
    if unknown or not names:
        problem = f"unknown {', '.join(unknown)}" if unknown else "no policy named"
        raise CliError(
            f"--policies {text!r}: {problem}; choose from {','.join(ALL_POLICIES)}", EXIT_USAGE
        )
    return names


def _planned(scenario: Scenario) -> None:
    """Fail early: options the spec refuses are usage errors, a scenario that fits no GPU count
    is infeasible (exit 3, as for `tokenscale plan`)."""
    try:
        scenario.plan  # noqa: B018
        scenario.spec()  # a group's cold start adds the rendezvous to --cold-start
    except ValidationError as e:

        def option(loc: tuple[int | str, ...]) -> str:
            return OPTION_OF_FIELD.get(".".join(map(str, loc)), "options")

        raise CliError("\n".join(validation_lines(e, "spec", option)), EXIT_USAGE) from None
    except ValueError as e:
        raise CliError(str(e), EXIT_INFEASIBLE) from None


def _check_targets(args: argparse.Namespace) -> int:
    from tokenscale.bench.targets import check

    try:
        return check(args)
    except TraceError as e:
        return fail(PROG, CliError(str(e), EXIT_BAD_INPUT))


def _prepare(args: argparse.Namespace) -> tuple[list[str], Scenario, Trace]:
    names = _policy_names(args.policies)
    writable_file("--json", args.json_path)
    writable_file("--plot", args.plot)
    scenario = scenario_from(args)
    _planned(scenario)
    return names, scenario, load_trace(args, scenario)


def run(args: argparse.Namespace) -> int:
    if args.check_targets:
        if args.scenario != "standard":
            return fail(
                PROG,
                CliError(
                    f"--check-targets checks the standard scenario's targets; drop --scenario "
                    f"{args.scenario} or --check-targets",
                    EXIT_USAGE,
                ),
            )
        return _check_targets(args)
    try:
        names, scenario, trace = _prepare(args)
    except CliError as e:
        return fail(PROG, e)
    results = run_suite(scenario, trace, names, args.batch_tuning == "off", not args.no_progress)
    print(
        f"{trace.name}: {len(trace)} requests over {trace.duration / 60:.0f} min, "
        f"{scenario.model} {scenario.quantization} on {_shape(scenario)}, "
        f"{scenario.plan.max_num_batched_tokens}-token steps "
        f"({scenario.plan.max_num_batched_tokens_source})"
    )
    print(report.table(results))
    meta = {**scenario.describe(), "trace": trace.name, "requests": len(trace)}
    try:
        if args.json_path:
            report.write_json(args.json_path, meta, results)
        if args.plot:
            counts = np.bincount((trace.arrival // 60).astype(np.int64)).tolist()
            report.plot(
                args.plot, f"{trace.name} — {scenario.model} on {scenario.gpu}", counts, results
            )
    except OSError as e:  # checked before the run; the disk can still fill up or vanish
        return fail(PROG, CliError(f"{e.filename}: cannot write ({e.strerror})", EXIT_BAD_INPUT))
    return 0


def _shape(scenario: Scenario) -> str:
    """2xh100-80gb; a group: 2 nodes x 8xh100-80gb (16 GPUs per replica)."""
    p = scenario.plan
    if p.nodes == 1:
        return f"{p.gpus_per_replica}x{scenario.gpu}"
    return (
        f"{p.nodes} nodes x {p.tensor_parallel}x{scenario.gpu} "
        f"({p.gpus_per_replica} GPUs per replica)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog=PROG,
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))

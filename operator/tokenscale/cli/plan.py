"""`tokenscale plan`: the capacity plan for a manifest or a model/GPU pair."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.cli.manifests import read_manifests
from tokenscale.cli.usage import (
    EXIT_CODES_HELP,
    EXIT_INFEASIBLE,
    EXIT_USAGE,
    CliError,
    Subcommands,
    fail,
    integer,
    validation_lines,
)
from tokenscale.domain import capacity
from tokenscale_contract import catalog

PROG = "tokenscale plan"
# The spec field each --model/--gpu option fills, to name the option in a refusal.
OPTION_OF_FIELD = {
    "model.maxModelLen": "--max-model-len",
    "model.architecture": "--model",
    "resources.gpu": "--gpu",
    "quantization.method": "--quantization",
}


def add_parser(sub: Subcommands) -> None:
    plan = sub.add_parser(
        "plan",
        help="print the capacity plan (GPUs, quantization, KV cache, batch) for a service",
        description="Plan from InferenceService manifests (-f) or from --model/--gpu.",
        epilog=EXIT_CODES_HELP,
    )
    plan.add_argument(
        "-f", "--filename", action="append", default=[], help="manifest file (repeatable)"
    )
    plan.add_argument("--model", choices=sorted(catalog.MODELS), help="catalog model id")
    plan.add_argument("--gpu", choices=sorted(catalog.GPUS), help="catalog GPU id")
    plan.add_argument(
        "--quantization",
        default="none",
        choices=["none", "fp8", "awq", "gptq", "int8", "auto"],
        help="quantization method (default none)",
    )
    plan.add_argument(
        "--max-model-len", type=integer(1), default=8192, help="context length (default 8192)"
    )
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")


def plan_json(result: capacity.Plan | capacity.Infeasible) -> dict[str, Any]:
    if isinstance(result, capacity.Infeasible):
        return {"feasible": False, "reason": result.reason, "model": result.model_name}
    return {
        "feasible": True,
        "reason": "",
        "model": result.model_name,
        "gpu": result.gpu,
        "quantization": result.quantization,
        "tensorParallel": result.tensor_parallel,
        "nodesPerReplica": result.nodes,
        "pipelineParallel": result.pipeline_parallel,
        "gpusPerReplica": result.gpus_per_replica,
        "weightsGiB": result.weights_gib,
        "kvCacheGiB": result.kv_cache_gib,
        "kvCacheTokens": result.kv_cache_tokens,
        "maxConcurrency": result.max_concurrency,
        "maxNumSeqs": result.max_num_seqs,
        "maxNumBatchedTokens": result.max_num_batched_tokens,
        "maxNumBatchedTokensSource": result.max_num_batched_tokens_source,
        "itlBudgetTokens": result.itl_budget_tokens,
        "minItlSeconds": result.min_itl_seconds,
        "notes": list(result.notes),
    }


def _from_files(filenames: list[str]) -> list[tuple[str, InferenceServiceSpec]]:
    """Every file is read and every problem reported, not just the first."""
    found: list[tuple[str, InferenceServiceSpec]] = []
    problems: list[str] = []
    for name in filenames:
        if not name.strip():
            raise CliError("-f: empty file name; give a manifest path", EXIT_USAGE)
        try:
            found += [(m.label, m.spec) for m in read_manifests(Path(name))]
        except CliError as e:
            problems.append(str(e))
    if problems:
        raise CliError("\n".join(problems))
    return found


def _from_options(args: argparse.Namespace) -> list[tuple[str, InferenceServiceSpec]]:
    if not (args.model and args.gpu):
        raise CliError("give -f MANIFEST, or both --model and --gpu", EXIT_USAGE)
    raw = {
        "model": {
            "source": "hf://catalog/" + args.model,
            "architecture": args.model,
            "maxModelLen": args.max_model_len,
        },
        "quantization": {"method": args.quantization},
        "resources": {"gpu": args.gpu},
    }
    try:
        spec = InferenceServiceSpec.model_validate(raw)
    except ValidationError as e:

        def option(loc: tuple[int | str, ...]) -> str:
            return OPTION_OF_FIELD.get(".".join(map(str, loc)), "options")

        raise CliError("\n".join(validation_lines(e, "spec", option)), EXIT_USAGE) from None
    return [(f"{args.model} on {args.gpu}", spec)]


def _table(name: str, row: dict[str, Any]) -> str:
    lines = [name]
    shown = {key: value for key, value in row.items() if value not in ("", [])}
    width = max([20, *map(len, shown)])
    lines += [f"  {key:<{width}} {value}" for key, value in shown.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        if args.filename and (args.model or args.gpu):
            raise CliError("give either -f MANIFEST or --model/--gpu, not both", EXIT_USAGE)
        specs = _from_files(args.filename) if args.filename else _from_options(args)
    except CliError as e:
        return fail(PROG, e)
    # Multi-node plans are shown (what a replica across nodes would take); the operator
    # refuses them until it renders LeaderWorkerSets (capacity.plan's refusal says so).
    rows = [(name, plan_json(capacity.plan(spec, multi_node=True))) for name, spec in specs]
    if args.json:
        payload: Any = rows[0][1] if len(rows) == 1 else {name: row for name, row in rows}
        print(json.dumps(payload, indent=2))
    else:
        print("\n\n".join(_table(name, row) for name, row in rows))
    return 0 if all(row["feasible"] for _, row in rows) else EXIT_INFEASIBLE

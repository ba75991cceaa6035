"""`tokenscale plan`: the capacity plan for a manifest or a model/GPU pair."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, catalog

EXIT_INFEASIBLE = 3


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser(
        "plan",
        help="print the capacity plan (GPUs, quantization, KV cache, batch) for a service",
        description="Plan from an InferenceService manifest (-f) or from --model/--gpu. "
        "Exit status 3 when no plan fits.",
    )
    plan.add_argument("-f", "--filename", type=Path, action="append", default=[], help="manifest")
    plan.add_argument("--model", choices=sorted(catalog.MODELS), help="catalog model id")
    plan.add_argument("--gpu", choices=sorted(catalog.GPUS), help="catalog GPU id")
    plan.add_argument(
        "--quantization",
        default="none",
        choices=["none", "fp8", "awq", "gptq", "int8", "auto"],
        help="quantization method (default none)",
    )
    plan.add_argument("--max-model-len", type=int, default=8192, help="default 8192")
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
        "gpusPerReplica": result.gpus_per_replica,
        "weightsGiB": result.weights_gib,
        "kvCacheGiB": result.kv_cache_gib,
        "kvCacheTokens": result.kv_cache_tokens,
        "maxConcurrency": result.max_concurrency,
        "maxNumSeqs": result.max_num_seqs,
        "maxNumBatchedTokens": result.max_num_batched_tokens,
        "minItlSeconds": result.min_itl_seconds,
        "notes": list(result.notes),
    }


def _specs(args: argparse.Namespace) -> list[tuple[str, InferenceServiceSpec]]:
    if args.filename:
        found = []
        for path in args.filename:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "InferenceService":
                    name = f"{path}:{doc.get('metadata', {}).get('name', '?')}"
                    found.append((name, InferenceServiceSpec.model_validate(doc["spec"])))
        return found
    if not (args.model and args.gpu):
        raise SystemExit("tokenscale plan: give -f MANIFEST, or both --model and --gpu")
    raw = {
        "model": {
            "source": "hf://catalog/" + args.model,
            "architecture": args.model,
            "maxModelLen": args.max_model_len,
        },
        "quantization": {"method": args.quantization},
        "resources": {"gpu": args.gpu},
    }
    return [(f"{args.model} on {args.gpu}", InferenceServiceSpec.model_validate(raw))]


def _table(name: str, row: dict[str, Any]) -> str:
    lines = [name]
    lines += [f"  {key:<20} {value}" for key, value in row.items() if value not in ("", [])]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        specs = _specs(args)
    except ValidationError as exc:
        print(f"tokenscale plan: invalid spec:\n{exc}", file=sys.stderr)
        return 2
    rows = [(name, plan_json(capacity.plan(spec))) for name, spec in specs]
    if args.json:
        payload: Any = rows[0][1] if len(rows) == 1 else {name: row for name, row in rows}
        print(json.dumps(payload, indent=2))
    else:
        print("\n\n".join(_table(name, row) for name, row in rows))
    return 0 if all(row["feasible"] for _, row in rows) else EXIT_INFEASIBLE

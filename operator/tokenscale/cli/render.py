"""`tokenscale render -f FILE [--json]`: the exact child objects the operator would apply for each
InferenceService in the files, with its plan, so they can be reviewed and diffed in GitOps.

The same pure functions the lifecycle handler calls (capacity.plan, lifecycle.concurrency_cap,
render.render_all, placement.from_env) make them; only the owner's uid is unknown until the
InferenceService exists, so ownerReferences carry an empty uid.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml

from tokenscale.api.v1alpha1 import KIND, InferenceServiceSpec
from tokenscale.cli.plan import _from_files, plan_json
from tokenscale.cli.usage import (
    EXIT_CODES_HELP,
    EXIT_INFEASIBLE,
    EXIT_USAGE,
    CliError,
    Subcommands,
    fail,
)
from tokenscale.domain import capacity, lifecycle, placement, render
from tokenscale.domain.names import ServiceRef

PROG = "tokenscale render"


def add_parser(sub: Subcommands) -> None:
    cmd = sub.add_parser(
        "render",
        help="print the Deployment, Service, ConfigMap, PDB (and PodMonitor) the operator would "
        "apply for each InferenceService",
        description="Render the child manifests of InferenceService manifests (-f), plan "
        "included. GPU node labels follow TOKENSCALE_GPU_NODE_* as the operator's do.",
        epilog=EXIT_CODES_HELP,
    )
    cmd.add_argument(
        "-f", "--filename", action="append", default=[], help="manifest file (repeatable)"
    )
    cmd.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of services whose manifest names none (default: default)",
    )
    cmd.add_argument(
        "--podmonitor",
        action="store_true",
        help="render a PodMonitor (as the operator does where the Prometheus Operator's CRDs "
        "exist) instead of scrape annotations",
    )
    cmd.add_argument("--json", action="store_true", help="print JSON instead of YAML")


def _namespaces(filenames: list[str], default: str) -> list[str]:
    """metadata.namespace of every InferenceService, in the order plan's reader finds them
    (the files were read and validated by then)."""
    found = []
    for name in filenames:
        for doc in yaml.safe_load_all(Path(name).read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == KIND:
                found.append(str((doc.get("metadata") or {}).get("namespace") or default))
    return found


def _service(
    label: str,
    namespace: str,
    spec: InferenceServiceSpec,
    podmonitor: bool,
    where: placement.GpuPlacement,
) -> dict[str, Any]:
    name = label.rsplit(" ", 1)[-1]
    # Rendered as for a cluster with LeaderWorkerSet: a model no single node holds comes out as
    # its multi-node group (where LWS is missing, the operator reports Planned=False instead).
    result = capacity.plan(spec, multi_node=True)
    entry: dict[str, Any] = {"name": name, "namespace": namespace, "plan": plan_json(result)}
    if isinstance(result, capacity.Plan):
        ref = ServiceRef(name, namespace)
        cap = lifecycle.concurrency_cap(spec, result, {})
        entry["manifests"] = render.render_all(ref, spec, result, cap, podmonitor, where)
    else:
        entry["manifests"] = []
    return entry


def _yaml(entries: list[dict[str, Any]]) -> str:
    out = []
    for entry in entries:
        plan = entry["plan"]
        head = [f"# {entry['namespace']}/{entry['name']}: plan"]
        head += [f"#   {k}: {v}" for k, v in plan.items() if v not in ("", [], None)]
        if not plan["feasible"]:
            head.append("#   nothing is created: the operator reports Planned=False")
        docs = [yaml.safe_dump(m, sort_keys=False) for m in entry["manifests"]]
        out.append("\n".join(head) + "\n" + "".join(f"---\n{d}" for d in docs))
    return "".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        if not args.filename:
            raise CliError("give -f MANIFEST (repeatable)", EXIT_USAGE)
        specs = _from_files(args.filename)
        where = placement.from_env(os.environ)
    except (CliError, ValueError) as e:
        return fail(PROG, e if isinstance(e, CliError) else CliError(str(e), EXIT_USAGE))
    namespaces = _namespaces(args.filename, args.namespace)
    entries = [
        _service(label, ns, spec, args.podmonitor, where)
        for (label, spec), ns in zip(specs, namespaces, strict=True)
    ]
    if args.json:
        print(json.dumps({"services": entries}, indent=2, sort_keys=False))
    else:
        print(_yaml(entries), end="")
    return 0 if all(e["plan"]["feasible"] for e in entries) else EXIT_INFEASIBLE

"""`tokenscale-worker`: run the gateway in front of vLLM or the simulator engine.

tokenscale-worker serve [--engine vllm|sim] [--model M] [--gpu G] [--quantization Q]
                        [--port N] [--config FILE] ...
tokenscale-worker sim   --model M --gpu G [--port N] [--label k=v] ...   (engine only)
tokenscale-worker args  [--config FILE]      (print the vLLM argv the config becomes)
tokenscale-worker fill  --source s3://B/P|hf://ORG/NAME [--revision R] --cache-dir DIR
                        (the model cache's fill Job)
tokenscale-worker wait-model --cache-dir DIR --key KEY [--poll-seconds S]
                        (the replicas' init container: returns once the fill is complete)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from tokenscale_contract import catalog
from tokenscale_contract import interface as contract
from tokenscale_contract.config import ConfigError, load_config
from tokenscale_contract.model_cache import MODEL_CACHE_MOUNT
from tokenscale_sim.profile import InfeasibleProfileError
from tokenscale_worker import fill, limits, runner
from tokenscale_worker.cli_types import (
    PORT,
    OneLineParser,
    float_range,
    histogram_buckets,
    int_range,
    label,
    tuning_path,
)
from tokenscale_worker.launcher import LauncherError, vllm_command
from tokenscale_worker.runner import serve, serve_sim_only


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="catalog id or hf://, pvc://, s3:// URI")
    p.add_argument(
        "--gpu",
        default="h100-80gb",
        choices=sorted(catalog.GPUS),
        help="catalog GPU kind (simulator timing)",
    )
    p.add_argument("--quantization", default=None, help="catalog id (awq, fp8) or vLLM name")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--tensor-parallel-size", type=int_range(1, 64), default=None)
    p.add_argument(
        "--pipeline-parallel-size",
        type=int_range(1, 16),
        default=None,
        help="simulator: nodes per replica, one pipeline stage each (a multi-node group's leader)",
    )
    p.add_argument("--max-model-len", type=int_range(1, 16_777_216), default=None)
    p.add_argument("--max-num-seqs", type=int_range(1, 1_048_576), default=None)
    p.add_argument("--max-num-batched-tokens", type=int_range(1, 16_777_216), default=None)
    p.add_argument(
        "--time-scale",
        type=float_range(0, 1e6, low_open=True),
        default=1.0,
        help="simulator: multiply step times (0.1 = ten times faster than the GPU)",
    )
    p.add_argument(
        "--label",
        action="append",
        type=label,
        default=[],
        metavar="K=V",
        help=f"simulator: constant metric label (repeatable; or ${contract.METRIC_LABELS_ENV})",
    )
    p.add_argument(
        "--custom-histogram-buckets",
        type=histogram_buckets,
        default=None,
        metavar="JSON",
        help="simulator: latency bucket bounds per vLLM bucket family, as vLLM takes them "
        "('{\"inter_token_latency\": [0.01, 0.05]}'); the TTFT and ITL families are modelled",
    )
    # 0.0.0.0 in pods: the kubelet's probes and the Service reach the pod on its pod IP, not on
    # 127.0.0.1. Tests and local runs pass --host 127.0.0.1.
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--config", default=None, help="worker config JSON (vLLM engine)")


def _gateway_limits(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--max-body-bytes",
        type=int_range(1024, limits.MAX_BODY_BYTES_LIMIT),
        default=limits.DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted (413 above it)",
    )
    s.add_argument(
        "--read-timeout",
        type=float_range(0, limits.MAX_TIMEOUT_S, low_open=True),
        default=limits.DEFAULT_READ_TIMEOUT_S,
        help="seconds a request body may take to arrive after its headers (408 after)",
    )
    s.add_argument(
        "--write-timeout",
        type=float_range(0, limits.MAX_TIMEOUT_S, low_open=True),
        default=limits.DEFAULT_WRITE_TIMEOUT_S,
        help="seconds a client may leave a response chunk unread before it is cut off",
    )
    s.add_argument(
        "--api-key-file",
        default=None,
        help=f"file holding the bearer token clients must send (else ${contract.API_KEY_ENV}; "
        "neither: no token required)",
    )


def _model_cache(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    f = sub.add_parser("fill", help="download a model into the shared model cache (the fill Job)")
    f.add_argument(
        "--source",
        required=True,
        type=fill.model_source,
        help="s3://bucket/prefix or hf://org/name",
    )
    f.add_argument(
        "--revision",
        type=fill.revision,
        default=None,
        help="hf: branch, tag or commit to download; s3: only part of the cache key",
    )
    f.add_argument(
        "--cache-dir", required=True, help=f"the cache volume's mount ({MODEL_CACHE_MOUNT} in pods)"
    )
    w = sub.add_parser("wait-model", help="wait until the model cache holds a complete entry")
    w.add_argument(
        "--cache-dir", required=True, help=f"the cache volume's mount ({MODEL_CACHE_MOUNT} in pods)"
    )
    w.add_argument("--key", required=True, type=fill.entry_key, help="the entry's directory name")
    w.add_argument(
        "--poll-seconds",
        type=float_range(0, 3600, low_open=True),
        default=2.0,
        help="how often to look for the entry's complete marker",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tokenscale-worker")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="gateway plus engine (the container's entrypoint)")
    _common(s)
    s.add_argument("--engine", choices=("vllm", "sim"), default="vllm")
    s.add_argument("--port", type=PORT, default=contract.GATEWAY_PORT)
    s.add_argument(
        "--engine-port",
        type=PORT,
        default=contract.ENGINE_PORT,
        help="the engine's port on 127.0.0.1 (0 picks a free one; simulator only)",
    )
    s.add_argument(
        "--tuning", type=tuning_path, default=contract.TUNING_PATH, help="tuning file to poll"
    )
    s.add_argument(
        "--concurrency-cap",
        type=int_range(1, limits.MAX_CONCURRENCY_CAP),
        default=256,
        help="cap until the tuning file says otherwise",
    )
    s.add_argument("--queue-limit", type=int_range(0, limits.MAX_QUEUE_LIMIT), default=1024)
    s.add_argument(
        "--drain-grace",
        type=float_range(0, limits.MAX_DRAIN_GRACE_S),
        default=30.0,
        help="seconds to let queued and in-flight requests finish on SIGTERM; a hard deadline: "
        f"the worker exits at most {runner.SHUTDOWN_MARGIN_S:g} s later",
    )
    _gateway_limits(s)
    e = sub.add_parser("sim", help="the simulator engine alone (fleet emulator, benchmarks)")
    _common(e)
    e.add_argument("--port", type=PORT, default=contract.ENGINE_PORT)
    a = sub.add_parser("args", help="print the vLLM argv for a worker config")
    a.add_argument("--config", default=None)
    _model_cache(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "args":
            print(json.dumps(vllm_command(load_config(args.config))))
            return 0
        if args.command == "fill":
            return fill.run_fill(args)
        if args.command == "wait-model":
            return fill.run_wait_model(args)
        if args.command == "sim":
            return asyncio.run(serve_sim_only(args))
        return asyncio.run(serve(args))
    except (ConfigError, LauncherError, InfeasibleProfileError, ValueError) as err:
        print(f"tokenscale-worker: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

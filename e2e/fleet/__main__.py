"""`python -m e2e.fleet`: run the fleet emulator until SIGTERM or SIGINT (then drain and exit)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from e2e.fleet.emulator import Fleet, FleetOptions


def parse(argv: Sequence[str] | None) -> FleetOptions:
    p = argparse.ArgumentParser(prog="python -m e2e.fleet", description=__doc__)
    p.add_argument("-n", "--namespace", action="append", required=True, help="repeatable")
    p.add_argument("--work-dir", type=Path, required=True, help="logs, tuning files, state.json")
    p.add_argument("--sd-file", type=Path, required=True, help="Prometheus file_sd JSON to write")
    p.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulator step-time multiplier (1 = the GPU's modelled speed)",
    )
    p.add_argument("--poll-interval", type=float, default=0.5)
    p.add_argument("--prestop", type=float, default=1.0, help="seconds from unlisting to SIGTERM")
    p.add_argument("--drain-grace", type=float, default=120.0)
    p.add_argument(
        "--engine",
        choices=("sim", "vllm"),
        default="sim",
        help="vllm: real vLLM's CPU build (TOKENSCALE_ENGINE_PROFILE=cpu-test and "
        "TOKENSCALE_VLLM_PYTHON, TOKENSCALE_MODELS_DIR in the environment); its start takes a "
        "minute, so startup probes run at their rendered period and pod readiness is reported",
    )
    a = p.parse_args(argv)
    vllm = a.engine == "vllm"
    return FleetOptions(
        namespaces=tuple(a.namespace),
        work_dir=a.work_dir,
        sd_file=a.sd_file,
        kubeconfig=a.kubeconfig,
        time_scale=a.time_scale,
        poll_interval_s=a.poll_interval,
        prestop_s=a.prestop,
        drain_grace_s=a.drain_grace,
        engine=a.engine,
        probe_period_scale=1.0 if vllm else 0.1,
        report_readiness=vllm,
    )


async def amain(options: FleetOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Fleet(options).run(stop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(amain(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())

"""Process wiring for `tokenscale-worker serve`: engine, gateway, tuning watcher, SIGTERM drain."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from aiohttp import web

from tokenscale_contract import catalog
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig, load_config
from tokenscale_sim.metrics import parse_labels
from tokenscale_sim.profile import build_profile
from tokenscale_sim.server import SimServer
from tokenscale_worker.auth import load_api_key
from tokenscale_worker.engine_profile import select as select_engine_profile
from tokenscale_worker.gateway import Gateway
from tokenscale_worker.launcher import engine_env, vllm_command
from tokenscale_worker.limits import GatewayLimits
from tokenscale_worker.tuning import Tuning, TuningWatcher

log = logging.getLogger(__name__)
# After the drain grace the worker stops within a bounded margin, whatever clients do:
# handlers still running get SHUTDOWN_STEP_S to end, are cancelled (their engine requests
# closed) and get SHUTDOWN_STEP_S more (aiohttp's shutdown waits twice), then the engine gets
# SIGTERM and, ENGINE_STOP_GRACE_S later, SIGKILL. Keep drain grace + margin below the pod's
# terminationGracePeriodSeconds.
SHUTDOWN_STEP_S = 1.0
ENGINE_STOP_GRACE_S = 5.0
SHUTDOWN_MARGIN_S = 4 * SHUTDOWN_STEP_S + ENGINE_STOP_GRACE_S


def _catalog_model(model: str | None) -> str:
    """A catalog id from a catalog id or a URI naming a catalog model's repository."""
    if model is None:
        return "llama-3.1-8b"
    if model in catalog.MODELS:
        return model
    repo = model.partition("://")[2] if "://" in model else model
    for m in catalog.MODELS.values():
        if m.hf_repo == repo or repo.rstrip("/").endswith(m.hf_repo.split("/")[1]):
            return m.id
    raise ValueError(
        f"the simulator needs a catalog model; {model!r} is not one of "
        f"{', '.join(sorted(catalog.MODELS))}"
    )


def _catalog_quant(name: str | None) -> str:
    if name is None:
        return "none"
    for q in catalog.QUANTS.values():
        if name in (q.id, q.vllm_name):
            return q.id
    raise ValueError(f"unknown quantization {name!r}; known: {', '.join(sorted(catalog.QUANTS))}")


def build_sim(args: argparse.Namespace) -> SimServer:
    model_id = _catalog_model(args.model)
    kwargs: dict[str, int] = {}
    for key in ("max_num_seqs", "max_num_batched_tokens", "max_model_len"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    profile = build_profile(
        model_id,
        args.gpu,
        _catalog_quant(args.quantization),
        tensor_parallel_size=args.tensor_parallel_size or 1,
        nodes=getattr(args, "pipeline_parallel_size", None) or 1,
        time_scale=args.time_scale,
        max_model_len=kwargs.pop("max_model_len", None) or 8192,
        **kwargs,  # type: ignore[arg-type]
    )
    labels = parse_labels(args.label, os.environ.get(contract.METRIC_LABELS_ENV))
    served = args.served_model_name or catalog.model(model_id).hf_repo
    return SimServer(profile, served, labels, args.custom_histogram_buckets)


async def _start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_STEP_S
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    # The bound address tells the port when 0 (any free port) was asked for.
    return runner, int(runner.addresses[0][1])


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_sim_only(args: argparse.Namespace) -> int:
    stop = _stop_event()
    runner, port = await _start_site(build_sim(args).app(), args.host, args.port)
    print(f"tokenscale-worker sim listening on {args.host}:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()
    return 0


def _vllm_config(args: argparse.Namespace) -> WorkerConfig:
    if args.config or os.environ.get(contract.CONFIG_ENV) or args.model is None:
        return load_config(args.config)
    return WorkerConfig.model_validate(
        {
            "modelSource": args.model,
            "servedName": args.served_model_name or args.model.rsplit("/", 1)[-1],
            "quantization": args.quantization,
            "tensorParallelSize": args.tensor_parallel_size or 1,
            "maxModelLen": args.max_model_len,
            "maxNumSeqs": args.max_num_seqs,
            "maxNumBatchedTokens": args.max_num_batched_tokens,
            "port": args.engine_port,
        }
    )


async def serve(args: argparse.Namespace) -> int:
    """Run engine and gateway until SIGTERM, then drain; the exit code is the worker's."""
    api_key = load_api_key(args.api_key_file)  # a bad key stops the start, before the engine
    stop = _stop_event()
    proc: asyncio.subprocess.Process | None = None
    engine_runner: web.AppRunner | None = None
    if args.engine == "sim":
        engine_runner, engine_port = await _start_site(
            build_sim(args).app(), "127.0.0.1", args.engine_port
        )
    else:
        cfg = _vllm_config(args)
        profile = select_engine_profile()
        argv = vllm_command(cfg, profile)
        log.info("starting engine (profile %s): %s", profile.name, argv)
        try:
            # Its own process group: vLLM's engine-core child is stopped with it (_stop_process).
            proc = await asyncio.create_subprocess_exec(
                *argv, env=engine_env(profile), start_new_session=True
            )
        except FileNotFoundError:
            raise ValueError(
                f"{argv[0]!r} is not on PATH: run the worker image, or use --engine sim"
            ) from None
        engine_port = cfg.port
        if "--headless" in argv:
            # A worker rank of a multi-node group: its vLLM serves no HTTP (the leader's does),
            # so no gateway either; it runs until SIGTERM or the engine's exit.
            print(f"tokenscale-worker: headless rank of a multi-node group: {argv}", flush=True)
            try:
                return await _wait_for_end(stop, proc)
            finally:
                if proc.returncode is None:
                    await _stop_process(proc)
    try:
        return await _run_gateway(args, api_key, engine_port, stop, proc)
    finally:
        if engine_runner is not None:
            await engine_runner.cleanup()
        if proc is not None and proc.returncode is None:
            await _stop_process(proc)


async def _run_gateway(
    args: argparse.Namespace,
    api_key: str | None,
    engine_port: int,
    stop: asyncio.Event,
    proc: asyncio.subprocess.Process | None,
) -> int:
    """Serve until SIGTERM or the engine's exit, drain within the grace, stop the gateway."""
    limits = GatewayLimits(args.max_body_bytes, args.read_timeout, args.write_timeout)
    start = Tuning(args.concurrency_cap, args.queue_limit)
    gateway = Gateway(f"http://127.0.0.1:{engine_port}", start, args.drain_grace, limits, api_key)
    watcher = TuningWatcher(args.tuning, start, gateway.apply_tuning)
    watcher.poll_once()
    watch_task = asyncio.create_task(watcher.run(), name="tuning-watcher")
    try:
        gw_runner, port = await _start_site(gateway.app(), args.host, args.port)
        print(
            f"tokenscale-worker gateway listening on {args.host}:{port}, engine on "
            f"127.0.0.1:{engine_port}, API key {'required' if api_key else 'not required'}",
            flush=True,
        )
        code = await _wait_for_end(stop, proc)
        log.info(
            "draining: %d in flight, %d queued",
            gateway.admission.in_flight,
            gateway.admission.queue_length,
        )
        drained = await gateway.drain()
        # Cancels what the grace did not finish (at most 2 x SHUTDOWN_STEP_S).
        await gw_runner.cleanup()
    finally:
        watch_task.cancel()
    return code if code else (0 if drained else 1)


async def _wait_for_end(stop: asyncio.Event, proc: asyncio.subprocess.Process | None) -> int:
    """0 on SIGTERM; the engine's exit code if it died first (Kubernetes restarts the pod)."""
    waits: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
    if proc is not None:
        waits.append(asyncio.create_task(proc.wait()))
    _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if proc is not None and proc.returncode is not None:
        log.error("engine exited with code %s", proc.returncode)
        return proc.returncode or 1
    return 0


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=ENGINE_STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    # vLLM's engine core runs in a child process of the server: whatever of the group is left
    # after the server exited (killed, or a crash) goes with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)

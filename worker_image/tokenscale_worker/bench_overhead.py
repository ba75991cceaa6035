"""Gateway overhead: latency the proxy adds per request at 200 concurrent streams.

    python -m tokenscale_worker.bench_overhead [--streams 200] [--tokens 20] [--rounds 6]

Three processes: a stub engine that streams `--tokens` SSE chunks 10 ms apart (the shape of a
decode; no simulator, so that batching noise cannot hide sub-millisecond effects), the gateway in
front of it, and this client. Rounds alternate between calling the engine directly and calling it
through the gateway; the added latency is the difference of the medians of time to first chunk
and of time to last chunk (the whole relayed stream). By default the gateway runs on a CPU of its
own (as in a pod, where vLLM's host process has its own cores) and the stub engine and the client
share another; `--no-pin` lets them contend, which measures the machine more than the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

from tokenscale_worker.gateway import Gateway
from tokenscale_worker.tuning import Tuning

CHUNK = (
    b'data: {"id":"cmpl-0","object":"text_completion","created":0,"model":"m","choices":'
    b'[{"index":0,"text":"lorem ","logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
)
TOKEN_INTERVAL_S = 0.025  # ~ITL of an 8B model on an H100 at 200 concurrent streams


async def _stub_completion(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(int(body.get("max_tokens", 20))):
        if i:
            await asyncio.sleep(TOKEN_INTERVAL_S)
        await resp.write(CHUNK)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def _health(_request: web.Request) -> web.Response:
    return web.Response()


async def _serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def run_engine(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/completions", _stub_completion)
    app.router.add_get("/health", _health)
    asyncio.run(_serve(app, port))


def run_gateway(port: int, engine_port: int) -> None:
    gateway = Gateway(f"http://127.0.0.1:{engine_port}", Tuning(1024, 1024))
    asyncio.run(_serve(gateway.app(), port))


async def _one(session: aiohttp.ClientSession, url: str, tokens: int) -> tuple[float, float]:
    start = time.perf_counter()
    first = 0.0
    async with session.post(url, json={"prompt": "x", "max_tokens": tokens, "stream": True}) as r:
        async for line in r.content:
            if line.startswith(b"data: {") and not first:
                first = time.perf_counter() - start
    return first, time.perf_counter() - start


async def _closed_loop(
    url: str, streams: int, tokens: int, duration_s: float, session: aiohttp.ClientSession
) -> list[tuple[float, float]]:
    """`streams` users, each sending its next request when the last one ends, for duration_s.

    Starts are staggered over one request's length so arrivals are spread as in steady load
    rather than one burst of 200 connections.
    """
    out: list[tuple[float, float]] = []
    stop = time.perf_counter() + duration_s
    spread = tokens * TOKEN_INTERVAL_S

    async def user(i: int) -> None:
        await asyncio.sleep(spread * i / streams)
        while time.perf_counter() < stop:
            out.append(await _one(session, url, tokens))

    await asyncio.gather(*(user(i) for i in range(streams)))
    return out


async def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def measure(
    streams: int, tokens: int, duration_s: float, engine_port: int, gw_port: int
) -> dict[str, float]:
    direct = f"http://127.0.0.1:{engine_port}/v1/completions"
    proxied = f"http://127.0.0.1:{gw_port}/v1/completions"
    await _wait_ready(f"http://127.0.0.1:{gw_port}/ready")
    samples: dict[str, list[tuple[float, float]]] = {"direct": [], "gateway": []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for url in (direct, proxied):  # warm-up: open every connection once
            await _closed_loop(url, streams, 2, 0.1, session)
        for i in range(4):  # alternate so drifts in machine load hit both modes alike
            mode, url = ("direct", direct) if i % 2 == 0 else ("gateway", proxied)
            samples[mode] += await _closed_loop(url, streams, tokens, duration_s / 4, session)
    result: dict[str, float] = {}
    for mode, values in samples.items():
        result[f"{mode}_requests"] = len(values)
        for k, part in ((0, "first_chunk"), (1, "last_chunk")):
            result[f"{mode}_{part}_p50_ms"] = 1000 * statistics.median(v[k] for v in values)
    for part in ("first_chunk", "last_chunk"):
        result[f"added_{part}_p50_ms"] = (
            result[f"gateway_{part}_p50_ms"] - result[f"direct_{part}_p50_ms"]
        )
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(
    args: argparse.Namespace, engine_port: int, gw_port: int, pin: bool
) -> list[subprocess.Popen[bytes]]:
    """Start the stub engine and the gateway; with `pin`, the gateway gets CPU 1 to itself."""
    me = [sys.executable, "-m", "tokenscale_worker.bench_overhead"]
    cpus = sorted(os.sched_getaffinity(0))
    engine_cpu, gw_cpu = (["--cpu", str(cpus[0])], ["--cpu", str(cpus[1])]) if pin else ([], [])
    if pin:
        os.sched_setaffinity(0, {cpus[0]})  # the client shares the engine's CPU
    engine = [*me, "--role", "engine", "--port", str(engine_port)]
    gateway = [*me, "--role", "gateway", "--port", str(gw_port), "--engine-port", str(engine_port)]
    return [
        subprocess.Popen([*engine, "--interval-ms", str(args.interval_ms), *engine_cpu]),
        subprocess.Popen([*gateway, *gw_cpu]),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokenscale_worker.bench_overhead")
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--seconds", type=float, default=12.0, help="measuring time, both modes")
    p.add_argument("--interval-ms", type=float, default=25.0, help="engine's time per token")
    p.add_argument("--role", choices=("client", "engine", "gateway"), default="client")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--engine-port", type=int, default=0)
    p.add_argument(
        "--no-pin", dest="pin", action="store_false",
        help="let the OS place the processes (by default the gateway gets a CPU of its own, as it "
        "has in a pod, and the stub engine shares one with the client)",
    )  # fmt: skip
    p.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.role == "engine":
        global TOKEN_INTERVAL_S
        TOKEN_INTERVAL_S = args.interval_ms / 1000
        run_engine(args.port)
        return 0
    if args.role == "gateway":
        run_gateway(args.port, args.engine_port)
        return 0
    engine_port, gw_port = _free_port(), _free_port()
    pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    children = _spawn(args, engine_port, gw_port, pin)
    try:
        result = asyncio.run(measure(args.streams, args.tokens, args.seconds, engine_port, gw_port))
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=10)
    result.update(
        streams=args.streams, tokens=args.tokens, interval_ms=args.interval_ms, pinned=pin
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

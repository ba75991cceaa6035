"""A gateway on 127.0.0.1 in front of a scriptable engine, and a raw-socket client.

The stub engine is a real aiohttp server. What it does is chosen by the request body's "stub"
field, so a test can make the engine hang (hold a slot), flood a response (to stall a reader) or
answer at once; it records every request it sees (path, method, whether a token reached it) and
whether the gateway cancelled it. The simulator engine cannot flood or hang on demand, which the
stalled-reader and capped-route tests need.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tokenscale_worker.gateway import Gateway
from tokenscale_worker.limits import GatewayLimits
from tokenscale_worker.tuning import Tuning

FLOOD_CHUNK = b"data: " + b"x" * 65_536 + b"\n\n"


@dataclass
class Seen:
    method: str
    path: str
    query: str
    authorization: str | None
    body_bytes: int


@dataclass
class StubEngine:
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: int = 0
    running: int = 0
    base: str = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path, request.query_string,
                 request.headers.get("Authorization"), len(body))
        )  # fmt: skip
        if request.path == "/health":
            return web.Response(text="")
        if request.path == "/metrics":
            return web.Response(text="vllm:num_requests_running 0\n")
        mode = _mode(body)
        self.running += 1
        try:
            if mode == "hang":
                await self.release.wait()
            elif mode == "flood":
                return await self._flood(request)
            return web.json_response({"path": request.path, "method": request.method})
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1

    async def _flood(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        while True:  # until the gateway closes the connection
            await resp.write(FLOOD_CHUNK)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen if s.path not in ("/health", "/metrics")]


def _mode(body: bytes) -> str:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return "answer"
    return str(data.get("stub", "answer")) if isinstance(data, dict) else "answer"


@dataclass
class Running:
    base: str
    port: int
    gateway: Gateway
    engine: StubEngine
    runner: web.AppRunner


async def _site(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


@asynccontextmanager
async def gateway_on_stub(
    cap: int = 4,
    queue: int = 0,
    limits: GatewayLimits | None = None,
    api_key: str | None = None,
    drain_grace_s: float = 10.0,
) -> AsyncIterator[Running]:
    engine = StubEngine()
    engine_runner, engine_port = await _site(engine.app())
    engine.base = f"http://127.0.0.1:{engine_port}"
    gateway = Gateway(engine.base, Tuning(cap, queue), drain_grace_s, limits, api_key)
    runner, port = await _site(gateway.app())
    try:
        yield Running(f"http://127.0.0.1:{port}", port, gateway, engine, runner)
    finally:
        engine.release.set()
        await runner.cleanup()
        await engine_runner.cleanup()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    informational: int = 0  # 1xx responses before this one (100 Continue)

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data

    def error(self) -> dict[str, object]:
        err = self.json()["error"]
        assert isinstance(err, dict)
        return err


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """One HTTP/1.1 response, its body framed by Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    informational = 0
    while head.startswith(b"HTTP/1.1 1"):  # 100 Continue before the real answer
        informational += 1
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        return RawResponse(status, headers, await _read_chunked(reader), informational)
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawResponse(status, headers, body, informational)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return body


async def raw_request(port: int, data: bytes, deadline_s: float = 15.0) -> RawResponse:
    """Send bytes as they are (malformed on purpose, if need be) and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), deadline_s)
    finally:
        writer.close()


def request_bytes(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()

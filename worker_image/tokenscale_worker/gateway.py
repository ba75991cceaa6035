"""The worker gateway: an OpenAI-compatible HTTP proxy in front of the engine.

- `/v1/completions` and `/v1/chat/completions` pass through a live concurrency cap with a bounded
  FIFO queue (`admission.Admission`); overflow gets 429 with Retry-After.
- Responses are relayed chunk by chunk as they arrive (streams are never buffered).
- `/ready` is readiness: 503 as soon as draining starts or while the engine is not healthy.
  `/health` is liveness: the engine's own health, still 200 while draining so that Kubernetes does
  not kill a replica that is finishing its requests.
- `/metrics` is the gateway's registry followed by the engine's own /metrics text (fetched per
  scrape), so one scrape of the public port sees both.
- `drain()` (on SIGTERM) refuses new requests with 503 and waits for queued and in-flight ones.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from tokenscale_worker.admission import Admission, Verdict, retry_after_s
from tokenscale_worker.contract import HEALTH_PATH, METRICS_PATH, READY_PATH
from tokenscale_worker.gateway_metrics import GatewayMetrics
from tokenscale_worker.tuning import Tuning

log = logging.getLogger(__name__)

CAPPED_PATHS = ("/v1/completions", "/v1/chat/completions")
# Hop-by-hop and framing headers: aiohttp sets its own for the relayed body.
_DROP_HEADERS = {
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "host",
    "content-encoding",
}
PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def error_body(message: str, err_type: str, code: int) -> dict[str, Any]:
    """vLLM's ErrorResponse shape, so clients see one error format from gateway and engine."""
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


class Gateway:
    def __init__(self, engine_url: str, tuning: Tuning, drain_grace_s: float = 30.0) -> None:
        self.engine_url = engine_url.rstrip("/")
        self.admission: Admission[asyncio.Future[None]] = Admission(
            tuning.concurrency_cap, tuning.queue_limit
        )
        self.drain_grace_s = drain_grace_s
        self.mean_service_s = 1.0  # running mean of request duration, for Retry-After
        self.metrics = GatewayMetrics(
            queue_length=lambda: self.admission.queue_length,
            in_flight=lambda: self.admission.in_flight,
            cap=lambda: self.admission.cap,
            queue_limit=lambda: self.admission.queue_limit,
        )
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get(READY_PATH, self._ready)
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(METRICS_PATH, self._metrics)
        for path in CAPPED_PATHS:
            app.router.add_post(path, self._capped)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        # No connection limit: the cap above is the limit, a pool limit would be a hidden second.
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def apply_tuning(self, tuning: Tuning) -> None:
        """New limits from the tuning file; in-flight requests are untouched."""
        self._wake(self.admission.set_limits(tuning.concurrency_cap, tuning.queue_limit))

    async def drain(self) -> bool:
        """Stop admitting; wait for queued and in-flight requests. True if all finished in time."""
        self.admission.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_grace_s
        while not self.admission.idle:
            left = deadline - loop.time()
            if left <= 0:
                log.warning(
                    "drain grace elapsed with %d in flight, %d queued",
                    self.admission.in_flight,
                    self.admission.queue_length,
                )
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except TimeoutError:
                pass
        return True

    # -- admission ------------------------------------------------------------------------------

    def _wake(self, admitted: list[asyncio.Future[None]]) -> None:
        for fut in admitted:
            if not fut.done():
                fut.set_result(None)
        self._changed.set()

    def _release(self) -> None:
        self._wake(self.admission.release())

    async def _admit(self) -> web.Response | None:
        """Wait for a slot; a response when the request is refused instead."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        start = loop.time()
        verdict = self.admission.request(fut)
        if verdict is Verdict.REJECTED_DRAINING:
            self.metrics.rejected.labels("draining").inc()
            return self._draining()
        if verdict is Verdict.REJECTED_QUEUE_FULL:
            self.metrics.rejected.labels("queue_full").inc()
            wait = retry_after_s(
                self.admission.queue_length, self.admission.cap, self.mean_service_s
            )
            return web.json_response(
                error_body(
                    f"replica queue is full ({self.admission.queue_limit} waiting); retry "
                    f"after {wait} s",
                    "TooManyRequestsError",
                    429,
                ),
                status=429,
                headers={"Retry-After": str(wait)},
            )
        if verdict is Verdict.QUEUED:
            try:
                await fut
            except asyncio.CancelledError:
                # The client went away while queued; if it was admitted in the same instant,
                # hand the slot on.
                if not self.admission.cancel(fut):
                    self._release()
                raise
        self.metrics.queue_wait.observe(loop.time() - start)
        self.metrics.admitted.inc()
        return None

    @staticmethod
    def _draining() -> web.Response:
        return web.json_response(
            error_body(
                "replica is shutting down; retry on another replica", "ServiceUnavailableError", 503
            ),
            status=503,
            headers={"Retry-After": "1"},
        )

    # -- handlers -------------------------------------------------------------------------------

    async def _capped(self, request: web.Request) -> web.StreamResponse:
        refused = await self._admit()
        if refused is not None:
            return refused
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            return await self._forward(request)
        finally:
            self._release()
            # 0.9/0.1 moving mean: recent enough to follow load, smooth enough for Retry-After.
            self.mean_service_s = 0.9 * self.mean_service_s + 0.1 * (loop.time() - start)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_HEADERS}
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self._session.request(
                request.method, self.engine_url + request.path_qs, data=body, headers=headers
            )
        except aiohttp.ClientError as err:
            return web.json_response(
                error_body(f"engine unavailable: {err}", "ServiceUnavailableError", 503),
                status=503,
            )
        async with upstream:
            resp = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_HEADERS
                },
            )
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        return resp

    async def _engine_ok(self) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(
                self.engine_url + HEALTH_PATH, timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _ready(self, _request: web.Request) -> web.Response:
        if self.admission.draining:
            return web.json_response({"ready": False, "reason": "draining"}, status=503)
        if not await self._engine_ok():
            return web.json_response({"ready": False, "reason": "engine not healthy"}, status=503)
        return web.json_response({"ready": True})

    async def _health(self, _request: web.Request) -> web.Response:
        ok = await self._engine_ok()
        return web.Response(status=200 if ok else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        text = generate_latest(self.metrics.registry).decode()
        assert self._session is not None
        try:
            async with self._session.get(
                self.engine_url + METRICS_PATH, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status == 200:
                    text += await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            log.warning("engine /metrics unreachable; serving gateway metrics only")
        return web.Response(body=text.encode(), headers={"Content-Type": PROM_CONTENT_TYPE})

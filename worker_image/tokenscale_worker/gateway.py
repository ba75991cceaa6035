"""The worker gateway: an OpenAI-compatible HTTP proxy in front of the engine.

- Every route that makes the engine run the model (`routes.CAPPED_POST_PATHS`) passes a live
  concurrency cap with a bounded FIFO queue (`admission.Admission`); overflow gets 429 with
  Retry-After. A few cheap read routes pass uncapped; every other path is refused (404/405).
- A request takes a slot only once its whole body is read (size limit, deadline, shared memory
  budget: `bodies.py`), so clients that stall after their headers never hold a slot.
- Responses are relayed chunk by chunk as they arrive, each write with a deadline (`relay.py`).
- `/ready` is readiness: 503 as soon as draining starts or while the engine is not healthy.
  `/health` is liveness: the engine's own health, still 200 while draining so that Kubernetes does
  not kill a replica that is finishing its requests.
- `/metrics` is the gateway's registry followed by the engine's own /metrics text (fetched per
  scrape), so one scrape of the public port sees both.
- An optional bearer token guards every route but /ready, /health, /metrics and /ping.
- `drain()` (on SIGTERM) refuses new requests with 503 and waits for queued and in-flight ones
  until the grace ends; the runner then cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from tokenscale_contract.interface import (
    ENGINE_HEALTH_TIMEOUT_S,
    HEALTH_PATH,
    METRICS_PATH,
    READY_PATH,
)
from tokenscale_contract.retry_after import retry_after_s
from tokenscale_worker.admission import Admission, Verdict
from tokenscale_worker.auth import authorized
from tokenscale_worker.bodies import BodyBudget, BodyRefusedError, read_body, too_large
from tokenscale_worker.gateway_metrics import GatewayMetrics
from tokenscale_worker.limits import GatewayLimits
from tokenscale_worker.relay import error_body, error_response, forward_headers, relay
from tokenscale_worker.routes import OPEN_PATHS, Kind, Refusal, Route, classify
from tokenscale_worker.tuning import Tuning

log = logging.getLogger(__name__)

__all__ = ["Gateway", "error_body"]
PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    def __init__(
        self,
        engine_url: str,
        tuning: Tuning,
        drain_grace_s: float = 30.0,
        limits: GatewayLimits | None = None,
        api_key: str | None = None,
    ) -> None:
        self.engine_url = engine_url.rstrip("/")
        self.admission: Admission[asyncio.Future[None]] = Admission(
            tuning.concurrency_cap, tuning.queue_limit
        )
        self.drain_grace_s = drain_grace_s
        self.limits = limits or GatewayLimits()
        self.bodies = BodyBudget(self.limits.buffer_budget_bytes)
        self.api_key = api_key
        self.mean_service_s = 1.0  # running mean of request duration, for Retry-After
        self.metrics = GatewayMetrics(
            queue_length=lambda: self.admission.queue_length,
            in_flight=lambda: self.admission.in_flight,
            cap=lambda: self.admission.cap,
            queue_limit=lambda: self.admission.queue_limit,
        )
        self._local: dict[str, Handler] = {
            READY_PATH: self._ready,
            HEALTH_PATH: self._health,
            METRICS_PATH: self._metrics,
        }
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        # Bodies are read by bodies.read_body with its own limit; aiohttp's is never reached.
        app = web.Application(client_max_size=self.limits.max_body_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self._dispatch, expect_handler=self._expect)
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
            return error_response(
                429,
                f"replica queue is full ({self.admission.queue_limit} waiting); retry "
                f"after {wait} s",
                "TooManyRequestsError",
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
        return error_response(
            503,
            "replica is shutting down; retry on another replica",
            "ServiceUnavailableError",
            headers={"Retry-After": "1"},
        )

    # -- handlers -------------------------------------------------------------------------------

    def _refused(self, request: web.Request, route: Route | Refusal) -> web.Response | None:
        """Unknown route, wrong method, missing token or draining: the refusal, else None."""
        if isinstance(route, Refusal):
            self.metrics.rejected.labels("unknown_route").inc()
            allow = {"Allow": ", ".join(sorted(route.allow))} if route.allow else None
            kind = "NotFoundError" if route.status == 404 else "MethodNotAllowedError"
            return error_response(route.status, route.message, kind, headers=allow)
        if (
            self.api_key is not None
            and route.path not in OPEN_PATHS
            and not authorized(request.headers.get("Authorization"), self.api_key)
        ):
            self.metrics.rejected.labels("unauthorized").inc()
            return error_response(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "AuthenticationError",
                headers={"WWW-Authenticate": 'Bearer realm="tokenscale"'},
            )
        if route.kind is Kind.CAPPED and self.admission.draining:
            self.metrics.rejected.labels("draining").inc()
            return self._draining()
        return None

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: a refusal known from the headers is sent instead of the
        100 Continue, so the client never uploads a body that would be refused."""
        refused = self._refused(request, classify(request.method, request.path))
        declared = request.content_length
        if refused is None and declared is not None and declared > self.limits.max_body_bytes:
            err = too_large(self.limits.max_body_bytes, f"Content-Length is {declared}")
            self.metrics.rejected.labels("body_413").inc()
            refused = error_response(err.status, err.message, err.err_type)
        if refused is not None:
            refused.force_close()  # the client may send the body anyway; do not read it
            return refused
        if request.headers.get("Expect", "").lower() != "100-continue":
            return error_response(
                417, "only 'Expect: 100-continue' is understood", "ExpectationFailedError"
            )
        if request.version == aiohttp.HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # as aiohttp's own handler: the response starts later
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route = classify(request.method, request.path)
        refused = self._refused(request, route)
        if refused is not None:
            return refused
        assert isinstance(route, Route)
        if route.kind is Kind.LOCAL:
            return await self._local[route.path](request)
        try:
            body = await read_body(request, self.limits, self.bodies)
        except BodyRefusedError as err:
            self.metrics.rejected.labels(f"body_{err.status}").inc()
            retry = {"Retry-After": "1"} if err.status == 503 else None
            resp = error_response(err.status, err.message, err.err_type, headers=retry)
            if err.status == 408:
                resp.force_close()  # the client is not sending; do not wait for more
            return resp
        try:
            if route.kind is Kind.CAPPED:
                return await self._capped(request, route, body)
            return await self._forward(request, route, body)
        finally:
            self.bodies.give(len(body))

    async def _capped(self, request: web.Request, route: Route, body: bytes) -> web.StreamResponse:
        refused = await self._admit()
        if refused is not None:
            return refused
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            return await self._forward(request, route, body)
        finally:
            self._release()
            # 0.9/0.1 moving mean: recent enough to follow load, smooth enough for Retry-After.
            self.mean_service_s = 0.9 * self.mean_service_s + 0.1 * (loop.time() - start)

    async def _forward(self, request: web.Request, route: Route, body: bytes) -> web.StreamResponse:
        assert self._session is not None
        url = self.engine_url + route.path
        if request.query_string:
            url += "?" + request.query_string
        headers = forward_headers(request, drop_authorization=self.api_key is not None)
        return await relay(self._session, request, url, body, headers, self.limits.write_timeout_s)

    async def _engine_ok(self) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(
                self.engine_url + HEALTH_PATH,
                timeout=aiohttp.ClientTimeout(total=ENGINE_HEALTH_TIMEOUT_S),
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _ready(self, _request: web.Request) -> web.Response:
        a = self.admission
        load = {"inFlight": a.in_flight, "queued": a.queue_length, "concurrencyCap": a.cap,
                "queueLimit": a.queue_limit}  # fmt: skip
        if a.draining:
            return web.json_response({"ready": False, "reason": "draining", **load}, status=503)
        if not await self._engine_ok():
            return web.json_response(
                {"ready": False, "reason": "engine not healthy", **load}, status=503
            )
        return web.json_response({"ready": True, **load})

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

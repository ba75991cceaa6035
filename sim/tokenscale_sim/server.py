"""The simulator engine as an HTTP server: vLLM's OpenAI API and metrics over `EngineModel`.

The engine loop drives the same `EngineModel.step` the benchmark drives in virtual time, here in
wall time: take a step at the loop's clock, sleep until the step's end, deliver its tokens. If the
host is too slow to keep up, steps start late and latencies grow, and the metrics say so: every
latency is measured in wall time at delivery, the moment a client can see the token.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence

from aiohttp import web
from prometheus_client import generate_latest

from tokenscale_sim.engine import EngineModel, ReqId, StepResult
from tokenscale_sim.metrics import SimMetrics
from tokenscale_sim.openai_api import ApiError, Reply, SimRequest, parse_request
from tokenscale_sim.profile import EngineProfile

log = logging.getLogger(__name__)
PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Stream:
    """What one request's handler waits on."""

    __slots__ = ("arrival", "done", "event", "finish_reason", "first", "last", "tokens")

    def __init__(self, arrival: float) -> None:
        self.arrival = arrival
        self.event = asyncio.Event()
        self.tokens = 0
        self.first = 0.0
        self.last = 0.0
        self.done = False
        self.finish_reason = "length"


class SimServer:
    def __init__(
        self,
        profile: EngineProfile,
        served_name: str,
        labels: Mapping[str, str] | None = None,
        buckets: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.profile = profile
        self.served_name = served_name
        self.engine = EngineModel(profile)
        self.metrics = SimMetrics(served_name, profile.max_model_len, labels, buckets)
        self.streams: dict[ReqId, _Stream] = {}
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/version", self._version)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        self._task = asyncio.create_task(self._run(), name="sim-engine")

    async def _stop(self, _app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- engine loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        engine = self.engine
        while True:
            if not engine.has_work:
                self._wake.clear()
                await self._wake.wait()
                continue
            res = engine.step(self._now())
            assert res is not None
            delay = res.end - self._now()
            # Always yield, even when late, so handlers and the network keep up with the engine.
            await asyncio.sleep(max(0.0, delay))
            self._deliver(res)

    def _deliver(self, res: StepResult) -> None:
        now = self._now()
        m = self.metrics
        for rid in res.tokens:
            st = self.streams.get(rid)
            if st is None:
                continue
            if st.tokens == 0:
                st.first = now
                m.ttft.observe(now - st.arrival)
            else:
                m.itl.observe(now - st.last)
                m.tpot_legacy.observe(now - st.last)
            st.tokens += 1
            st.last = now
            st.event.set()
        for f in res.finished:
            st = self.streams.get(f.req_id)
            if st is None:
                continue
            st.done, st.finish_reason = True, f.finish_reason
            m.success[f.finish_reason].inc()
            m.e2e.observe(now - st.arrival)
            m.queue_time.observe(f.queue_time)
            m.request_prompt_tokens.observe(f.prompt_tokens)
            m.request_generation_tokens.observe(f.generated_tokens)
            if f.generated_tokens > 1:
                m.request_tpot.observe((now - st.first) / (f.generated_tokens - 1))
        m.prompt_tokens.inc(res.prompt_tokens)
        m.generation_tokens.inc(len(res.tokens))
        m.preemptions.inc(len(res.preempted))
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.running.set(self.engine.num_running)
        self.metrics.waiting.set(self.engine.num_waiting)
        self.metrics.kv_usage.set(self.engine.kv_usage)

    # -- handlers -------------------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            req = parse_request(
                await request.read(), chat, self.served_name, self.profile.max_model_len
            )
        except ApiError as err:
            return web.json_response(err.body(), status=err.status)
        rid = next(self._ids)
        st = _Stream(self._now())
        self.streams[rid] = st
        self.engine.add_request(
            rid, req.prompt_tokens, req.max_tokens, st.arrival, req.output_tokens
        )
        self._update_gauges()
        self._wake.set()
        try:
            if req.stream:
                return await self._stream(request, req, st)
            while not st.done:
                st.event.clear()
                await st.event.wait()
            return web.json_response(Reply(req).full(st.tokens, st.finish_reason))
        finally:
            if not st.done:  # the client went away: free its batch slot and KV blocks
                self.engine.abort(rid)
                self.metrics.success["abort"].inc()
                self._update_gauges()
            del self.streams[rid]

    async def _stream(
        self, request: web.Request, req: SimRequest, st: _Stream
    ) -> web.StreamResponse:
        reply = Reply(req)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await resp.prepare(request)
        first = reply.first_chunk()
        if first:
            await resp.write(first)
        sent = 0
        while True:
            st.event.clear()
            if st.tokens == sent and not st.done:
                await st.event.wait()
                continue
            n, done = st.tokens, st.done
            # Tokens that piled up while this handler waited go out in one write, as vLLM does.
            out = b"".join(
                reply.token_chunk(i, st.finish_reason if done and i == n - 1 else None)
                for i in range(sent, n)
            )
            sent = n
            if done:
                out += reply.last_chunks(n)
            await resp.write(out)
            if done:
                break
        await resp.write_eof()
        return resp

    async def _models(self, _request: web.Request) -> web.Response:
        card = {
            "id": self.served_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.served_name,
            "parent": None,
            "max_model_len": self.profile.max_model_len,
            "permission": [],
        }
        return web.json_response({"object": "list", "data": [card]})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": "0.32.0+tokenscale-sim"})

    async def _metrics(self, _request: web.Request) -> web.Response:
        self._update_gauges()
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": PROM_CONTENT_TYPE},
        )

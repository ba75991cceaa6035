"""A round-robin front per service, as a ClusterIP Service spreads connections over its ready
endpoints: a small aiohttp proxy on a local port that relays each request, streams included,
to the next live worker of the service."""

from __future__ import annotations

import itertools
import logging

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

# Framing and hop-by-hop headers: aiohttp writes its own for the relayed body.
_DROP = {"connection", "content-length", "transfer-encoding", "keep-alive", "host"}


class Front:
    """Requests to `url` go to the service's backends in turn. A backend that refuses the
    connection (stopped between the pick and the connect) is skipped, as kube-proxy would
    after the endpoint update; nothing is retried once a request reached a worker."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.backends: list[int] = []
        self.port: int | None = None
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2),
            auto_decompress=False,
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def set_backends(self, ports: list[int]) -> None:
        self.backends = sorted(ports)

    def _pick(self, tried: set[int]) -> int | None:
        left = [p for p in self.backends if p not in tried]
        if not left:
            return None
        return left[next(self._turn) % len(left)]

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        tried: set[int] = set()
        while (port := self._pick(tried)) is not None:
            tried.add(port)
            try:
                return await self._forward(request, port, body, headers)
            except aiohttp.ClientConnectorError as err:
                log.info("%s: backend %d refused (%s); next", self.service, port, err)
        return web.json_response(
            {"error": {"message": f"no ready endpoints for {self.service}", "code": 503}},
            status=503,
        )

    async def _forward(
        self, request: web.Request, port: int, body: bytes | None, headers: dict[str, str]
    ) -> web.StreamResponse:
        assert self._session is not None
        url = f"http://127.0.0.1:{port}{request.path_qs}"
        async with self._session.request(
            request.method, url, data=body, headers=headers
        ) as upstream:
            resp = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _DROP},
            )
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

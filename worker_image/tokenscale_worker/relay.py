"""Forwarding one request to the engine and relaying its response chunk by chunk.

Chunks are written as they arrive (an SSE token reaches the client when the engine writes it), and
each write has a deadline: a client that stops reading is cut off and its engine request closed,
so the engine aborts it and the concurrency slot comes free. At most the socket buffers and
aiohttp's 64 KiB write buffer are held per response: nothing is accumulated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

# Hop-by-hop and framing headers: aiohttp sets its own for the relayed body.
DROP_HEADERS = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "host", "content-encoding",
     "upgrade", "te", "trailer", "proxy-authorization", "proxy-connection", "expect"}
)  # fmt: skip


def error_body(message: str, err_type: str, code: int) -> dict[str, Any]:
    """vLLM's ErrorResponse shape, so clients see one error format from gateway and engine."""
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


def error_response(
    status: int, message: str, err_type: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(error_body(message, err_type, status), status=status, headers=headers)


def forward_headers(request: web.Request, drop_authorization: bool) -> dict[str, str]:
    drop = DROP_HEADERS | {"authorization"} if drop_authorization else DROP_HEADERS
    return {k: v for k, v in request.headers.items() if k.lower() not in drop}


async def relay(
    session: aiohttp.ClientSession,
    request: web.Request,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    write_timeout_s: float,
) -> web.StreamResponse:
    try:
        upstream = await session.request(request.method, url, data=body or None, headers=headers)
    except aiohttp.ClientError as err:
        return error_response(503, f"engine unavailable: {err}", "ServiceUnavailableError")
    async with upstream:
        resp = web.StreamResponse(
            status=upstream.status,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in DROP_HEADERS},
        )
        try:
            async with asyncio.timeout(write_timeout_s):
                await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                async with asyncio.timeout(write_timeout_s):
                    await resp.write(chunk)
            async with asyncio.timeout(write_timeout_s):
                await resp.write_eof()
        except TimeoutError:
            log.warning(
                "%s %s: the client read nothing for %g s; closing it and the engine request",
                request.method, request.path, write_timeout_s,
            )  # fmt: skip
            upstream.close()  # the engine sees the disconnect and aborts the request
            if request.transport is not None:
                request.transport.abort()
    return resp

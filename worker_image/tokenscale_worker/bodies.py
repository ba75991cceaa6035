"""Reading request bodies with a size limit, a deadline and a shared memory budget.

The gateway reads the whole body before a request may take a concurrency slot, so a client that
stalls after its headers costs a connection, never a slot; these bounds keep what such clients
can cost small.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tokenscale_worker.limits import GatewayLimits


class BodyRefusedError(Exception):
    """The body was not accepted; carries the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, err_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type


class BodyBudget:
    """Bytes of request bodies held in memory at once, across all requests."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


async def read_body(request: web.Request, limits: GatewayLimits, budget: BodyBudget) -> bytes:
    """The whole body; the caller gives `len(body)` back to `budget` when done with it.

    Raises BodyRefusedError: 413 over `max_body_bytes` (by Content-Length before reading, or
    once the bytes read pass it), 408 when the body does not arrive within `read_timeout_s`,
    503 when the gateway already holds its budget of bodies.
    """
    if not request.body_exists:
        return b""
    limit = limits.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit, f"Content-Length is {declared}")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            while chunk := await request.content.readany():
                if len(body) + len(chunk) > limit:
                    raise too_large(limit, f"more than {limit} bytes were sent")
                if not budget.take(len(chunk)):
                    raise BodyRefusedError(
                        503,
                        f"the gateway holds {budget.held} bytes of request bodies, its limit; "
                        "retry shortly or on another replica",
                        "ServiceUnavailableError",
                    )
                body += chunk
    except TimeoutError:
        budget.give(len(body))
        raise BodyRefusedError(
            408,
            f"the request body did not arrive within {limits.read_timeout_s:g} s of the "
            f"headers ({len(body)} bytes received); send it at once",
            "RequestTimeoutError",
        ) from None
    except BaseException:
        budget.give(len(body))
        raise
    return bytes(body)


def too_large(limit: int, what: str) -> BodyRefusedError:
    return BodyRefusedError(
        413,
        f"request body too large: {what}, the limit is {limit} bytes (worker option "
        "--max-body-bytes)",
        "RequestEntityTooLargeError",
    )

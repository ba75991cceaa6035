"""A catalogue of raw-HTTP abuses against the gateway, tallied per outcome.

Each case is sent as raw bytes to a gateway on 127.0.0.1 in front of a recording stub engine, and
is then followed by an ordinary request that must still be served. Outcomes:

- rejected clearly: the expected 4xx/5xx status with the gateway's JSON error (or, for bytes that
  are not HTTP at all, aiohttp's parser answering 4xx with a reason), and the engine never saw it;
- accepted silently: a 2xx, or the engine saw a request it should not have;
- crashed: no answer, a 500, or the ordinary request after it failed;
- lost: a case that should be served (an unusual but valid request) was not.

`pytest -s tests/worker/test_gateway_abuse.py` prints the tally; the test asserts that the last
three columns are 0.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

from tests.worker.gateway_harness import (
    Running,
    gateway_on_stub,
    raw_request,
    request_bytes,
)
from tests.worker.test_gateway_hostile import UNKNOWN
from tokenscale_worker.limits import GatewayLimits

ANSWER = json.dumps({"stub": "answer"}).encode()
KEY = "sk-abuse-key"
LIMITS = GatewayLimits(max_body_bytes=64 * 1024, read_timeout_s=0.3, write_timeout_s=0.3)


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    status: int  # expected status
    err_type: str | None  # the gateway's JSON error type; None: aiohttp's own parser refusal
    engine_path: str | None = None  # for valid requests: the path the engine must see


def post(path: str, body: bytes = ANSWER, *headers: str) -> bytes:
    return request_bytes("POST", path, body, *headers)


def head_only(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


CASES: list[Case] = [
    *(Case(f"unknown route {p}", post(p), 404, "NotFoundError") for p in UNKNOWN),
    Case("GET on a generation route", request_bytes("GET", "/v1/completions"), 405,
         "MethodNotAllowedError"),
    Case("PUT on chat", post("/v1/chat/completions").replace(b"POST", b"PUT", 1), 405,
         "MethodNotAllowedError"),
    Case("DELETE /v1/models", request_bytes("DELETE", "/v1/models"), 405,
         "MethodNotAllowedError"),
    Case("method FOO (not an HTTP method)", post("/v1/completions").replace(b"POST", b"FOO", 1),
         400, None),
    Case("method PATCH", post("/v1/completions").replace(b"POST", b"PATCH", 1), 405,
         "MethodNotAllowedError"),
    Case("websocket upgrade to /v1/realtime",
         head_only("GET /v1/realtime HTTP/1.1", "Host: g", "Connection: Upgrade",
                   "Upgrade: websocket", "Sec-WebSocket-Version: 13",
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="), 404, "NotFoundError"),
    Case("path of 5000 characters", post("/" + "a" * 5000), 404, "NotFoundError"),
    Case("NUL in the path", post("/v1/completions%00"), 404, "NotFoundError"),
    Case("dot segments to an admin route", post("/v1/responses/../../sleep"), 404,
         "NotFoundError"),
    Case("Content-Length of a terabyte",
         head_only("POST /v1/completions HTTP/1.1", "Host: g", "Content-Length: 1000000000000"),
         413, "RequestEntityTooLargeError"),
    Case("chunked body over the limit",
         head_only("POST /v1/completions HTTP/1.1", "Host: g", "Transfer-Encoding: chunked")
         + (b"10000\r\n" + b"x" * 0x10000 + b"\r\n") * 2 + b"0\r\n\r\n",
         413, "RequestEntityTooLargeError"),
    Case("oversize upload to an uncapped route",
         post("/tokenize", b" " * (64 * 1024 + 1)), 413, "RequestEntityTooLargeError"),
    Case("Expect: 100-continue with an oversize body",
         head_only("POST /v1/completions HTTP/1.1", "Host: g", "Expect: 100-continue",
                   "Content-Length: 90000000"), 413, "RequestEntityTooLargeError"),
    Case("headers, then no body", head_only("POST /v1/completions HTTP/1.1", "Host: g",
                                            "Content-Length: 50"), 408, "RequestTimeoutError"),
    Case("half a body, then silence",
         head_only("POST /v1/chat/completions HTTP/1.1", "Host: g", "Content-Length: 50")
         + b'{"model": ', 408, "RequestTimeoutError"),
    Case("chunked body that stops", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Transfer-Encoding: chunked") + b"5\r\nab",
         408, "RequestTimeoutError"),
    Case("Content-Length not a number", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Content-Length: abc"), 400, None),
    Case("negative Content-Length", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Content-Length: -5"), 400, None),
    Case("Content-Length and chunked together", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Content-Length: 5",
        "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400, None),
    Case("two different Content-Lengths", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Content-Length: 5", "Content-Length: 7")
         + b"xxxxxxx", 400, None),
    Case("bad chunk size", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Transfer-Encoding: chunked")
         + b"zz\r\n", 400, None),
    Case("header line of 20 000 bytes", post("/v1/completions", ANSWER, "X-Big: " + "a" * 20000),
         400, None),
    Case("300 headers", post("/v1/completions", ANSWER, *(f"X-H{i}: v" for i in range(300))),
         400, None),
    Case("not HTTP at all", b"HELLO THERE\r\n\r\n", 400, None),
    Case("HTTP/2 preface on an HTTP/1 port", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, None),
    Case("absolute-form target naming another host",
         post("/v1/completions").replace(b"/v1/completions", b"http://169.254.169.254/v1/"
                                         b"completions", 1), 200, None, "/v1/completions"),
    Case("percent-encoded generation path", post("/v1/%63ompletions"), 200, None,
         "/v1/completions"),
    Case("non-JSON body on a generation route", post("/v1/completions", b"\xff\xfe"), 200, None,
         "/v1/completions"),
]  # fmt: skip

AUTH_CASES: list[Case] = [
    Case("no Authorization", post("/v1/completions"), 401, "AuthenticationError"),
    Case("wrong token", post("/v1/completions", ANSWER, "Authorization: Bearer nope"), 401,
         "AuthenticationError"),
    Case("Basic scheme", post("/v1/completions", ANSWER, f"Authorization: Basic {KEY}"), 401,
         "AuthenticationError"),
    Case("token in the query", post(f"/v1/completions?api_key={KEY}"), 401,
         "AuthenticationError"),
    Case("token in another header",
         request_bytes("GET", "/v1/models", b"", f"X-Api-Key: {KEY}"), 401, "AuthenticationError"),
    Case("token prefix only", post("/v1/completions", ANSWER, f"Authorization: Bearer {KEY[:4]}"),
         401, "AuthenticationError"),
    Case("token for an uncapped route missing", request_bytes("GET", "/v1/models"), 401,
         "AuthenticationError"),
    Case("unauthenticated huge upload", head_only(
        "POST /v1/completions HTTP/1.1", "Host: g", "Content-Length: 900000000"), 401,
         "AuthenticationError"),
]  # fmt: skip


async def _outcome(gw: Running, case: Case, control_headers: tuple[str, ...]) -> str:
    before = len(gw.engine.paths())
    try:
        resp = await raw_request(gw.port, case.data, deadline_s=15)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        return "crashed"
    reached = gw.engine.paths()[before:]
    if case.engine_path is not None:
        served = resp.status == case.status and reached == [case.engine_path]
        outcome = "served" if served else "lost"
    elif 200 <= resp.status < 300 or reached:
        outcome = "accepted silently"
    elif resp.status == 500:
        outcome = "crashed (500)"
    elif resp.status != case.status:
        outcome = f"unexpected status {resp.status}"
    elif case.err_type is None:
        outcome = "rejected clearly" if resp.body else "rejected without a reason"
    else:
        clear = resp.error()["type"] == case.err_type and resp.error()["message"]
        outcome = "rejected clearly" if clear else "rejected without a reason"
    control = await raw_request(gw.port, post("/v1/completions", ANSWER, *control_headers))
    return outcome if control.status == 200 else "crashed"


async def test_abuse_catalogue_is_rejected_clearly_and_nothing_crashes() -> None:
    tally: Counter[str] = Counter()
    problems: list[str] = []
    with_key = (f"Authorization: Bearer {KEY}",)
    for cases, key, control in ((CASES, None, ()), (AUTH_CASES, KEY, with_key)):
        async with gateway_on_stub(cap=4, queue=0, limits=LIMITS, api_key=key) as gw:
            for case in cases:
                outcome = await _outcome(gw, case, control)
                tally[outcome] += 1
                if outcome not in ("rejected clearly", "served"):
                    problems.append(f"{case.name}: {outcome}")
            assert gw.gateway.admission.in_flight == 0
            assert gw.gateway.bodies.held == 0
    tried = len(CASES) + len(AUTH_CASES)
    print(
        f"\ngateway abuse catalogue: tried {tried}, rejected clearly {tally['rejected clearly']}, "
        f"served as valid {tally['served']}, accepted silently {tally['accepted silently']}, "
        f"crashed {sum(v for k, v in tally.items() if k.startswith('crashed'))}, "
        f"lost {tally['lost']}"
    )
    assert problems == [], "\n".join(problems)
    assert tally["rejected clearly"] + tally["served"] == tried

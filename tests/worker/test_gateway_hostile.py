"""Hostile clients against the gateway over real HTTP on 127.0.0.1 (issue 11, gateway part).

Slow uploads, huge bodies, clients that stop reading, routes around the cap, unknown routes, and
missing tokens: each is refused with an exact status and message, holds no concurrency slot, and
leaves the gateway serving.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp
import openai
import pytest

from tests.worker.conftest import MODEL, InProcessWorker, WorkerProcess, wait_until_ready
from tests.worker.gateway_harness import (
    RawResponse,
    gateway_on_stub,
    raw_request,
    read_response,
    request_bytes,
    rss_bytes,
)
from tokenscale_worker.limits import MIB, GatewayLimits
from tokenscale_worker.routes import CAPPED_POST_PATHS
from tokenscale_worker.runner import SHUTDOWN_MARGIN_S

HANG = json.dumps({"stub": "hang"}).encode()
ANSWER = json.dumps({"stub": "answer"}).encode()


async def until(check: Callable[[], bool | Awaitable[bool]], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not seen within {deadline_s} s")


async def stalled_upload(port: int, declared: int, sent: bytes, path: str = "/v1/completions"):  # type: ignore[no-untyped-def]
    """Headers announcing `declared` bytes, then `sent` of them, then silence."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
    writer.write(f"{head}Content-Length: {declared}\r\n\r\n".encode() + sent)
    await writer.drain()
    return reader, writer


# -- slow uploads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("worker", [{"cap": 2, "queue": 0}], indirect=True)
async def test_slowloris_uploads_hold_no_slot(worker: InProcessWorker) -> None:
    """Two uploads stalled after their headers, cap 2: real requests are still served at once."""
    port = int(worker.base.rsplit(":", 1)[1])
    stalled = [await stalled_upload(port, 1000, b'{"model": ') for _ in range(2)]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{worker.base}/ready") as resp:
            ready = await resp.json()
        assert resp.status == 200
        assert (ready["inFlight"], ready["queued"], ready["concurrencyCap"]) == (0, 0, 2)
    client = openai.AsyncOpenAI(base_url=f"{worker.base}/v1", api_key="x", max_retries=0)
    # Cap 2 and no queue: were the stalled uploads holding slots, these would get 429.
    outs = await asyncio.gather(
        *(client.completions.create(model=MODEL, prompt="a b", max_tokens=3) for _ in range(2))
    )
    assert [o.usage.completion_tokens for o in outs if o.usage] == [3, 3]
    assert worker.gateway.admission.in_flight == 0
    for _reader, writer in stalled:
        writer.close()


async def test_stalled_upload_gets_408_and_never_reaches_the_engine() -> None:
    limits = GatewayLimits(read_timeout_s=0.3)
    async with gateway_on_stub(cap=1, limits=limits) as gw:
        for sent in (b"", b'{"stub": '):  # nothing after the headers; half a body
            reader, writer = await stalled_upload(gw.port, 100, sent)
            resp = await asyncio.wait_for(read_response(reader), 15)
            writer.close()
            assert resp.status == 408
            assert resp.error()["type"] == "RequestTimeoutError"
            assert resp.error()["message"] == (
                f"the request body did not arrive within 0.3 s of the headers ({len(sent)} "
                "bytes received); send it at once"
            )
            assert resp.headers["connection"] == "close"
        assert gw.engine.paths() == []
        assert gw.gateway.admission.in_flight == 0
        assert gw.gateway.bodies.held == 0


# -- large bodies ----------------------------------------------------------------------------------


async def test_declared_oversize_body_is_refused_before_reading() -> None:
    async with gateway_on_stub() as gw:
        for path in ("/v1/completions", "/tokenize"):
            resp = await raw_request(gw.port, request_bytes("POST", path)[:-4].replace(
                b"Content-Length: 0", b"Content-Length: 60000000") + b"\r\n\r\n")  # fmt: skip
            assert resp.status == 413
            assert resp.error()["message"] == (
                "request body too large: Content-Length is 60000000, the limit is "
                f"{8 * MIB} bytes (worker option --max-body-bytes)"
            )
        assert gw.engine.paths() == []


async def _chunked_upload(port: int, total: int, path: str) -> RawResponse:
    """A body without Content-Length, streamed in 64 KiB chunks; the reply may come early."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"  # one object, reused: the client holds 64 KiB

    async def send() -> None:
        with pytest.raises(ConnectionError):  # the gateway closes the connection at some point
            for _ in range(total // 0x10000):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            raise ConnectionResetError  # sent it all: also fine

    sender = asyncio.create_task(send())
    try:
        return await asyncio.wait_for(read_response(reader), 60)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def test_six_60mb_bodies_get_413_and_memory_stays_bounded() -> None:
    """The issue's six 60 MB bodies grew the gateway from 48 to 753 MB; now each body is cut off
    at the 1 MiB limit, so growth is bounded by 6 x 1 MiB plus buffers (asserted: < 64 MiB)."""
    limits = GatewayLimits(max_body_bytes=MIB)
    async with gateway_on_stub(limits=limits) as gw:
        peak = base = rss_bytes()
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, rss_bytes())
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        paths = ["/v1/completions", "/v1/chat/completions", "/detokenize", "/tokenize",
                 "/v1/embeddings", "/invocations"]  # fmt: skip
        replies = await asyncio.gather(*(_chunked_upload(gw.port, 60_000_000, p) for p in paths))
        done = True
        await sampler
    assert [r.status for r in replies] == [413] * 6
    assert all(
        str(r.error()["message"]).startswith("request body too large: more than 1048576 bytes")
        for r in replies
    )
    assert gw.engine.paths() == []
    assert gw.gateway.bodies.held == 0
    assert peak - base < 64 * MIB, f"RSS grew by {(peak - base) / MIB:.0f} MiB"


async def test_body_memory_budget_sheds_with_503() -> None:
    limits = GatewayLimits(max_body_bytes=64 * 1024, buffer_bodies=2)
    async with gateway_on_stub(limits=limits) as gw:
        stalled = [await stalled_upload(gw.port, 65_536, b" " * 60_000) for _ in range(2)]
        await until(lambda: gw.gateway.bodies.held == 120_000, 10, "120 000 bytes held")
        resp = await raw_request(gw.port, request_bytes("POST", "/v1/completions", b" " * 20_000))
        assert (resp.status, resp.headers["retry-after"]) == (503, "1")
        assert resp.error()["message"] == (
            "the gateway holds 120000 bytes of request bodies, its limit; retry shortly or on "
            "another replica"
        )
        for _r, writer in stalled:
            writer.close()
        await until(lambda: gw.gateway.bodies.held == 0, 10, "budget returned")
        ok = await raw_request(gw.port, request_bytes("POST", "/v1/completions", ANSWER))
        assert ok.status == 200


# -- clients that stop reading ---------------------------------------------------------------------


async def test_stalled_readers_are_cut_off_and_their_slots_freed() -> None:
    """The issue's case: two streams that stop reading held a cap of 2 for good."""
    limits = GatewayLimits(write_timeout_s=0.3)
    async with gateway_on_stub(cap=2, limits=limits) as gw:
        socks = []
        for _ in range(2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", gw.port))
            sock.sendall(request_bytes("POST", "/v1/completions", b'{"stub": "flood"}'))
            socks.append(sock)
        # The clients never read. The gateway must give up on them, close the engine requests
        # and free the slots (the bound is generous: the write deadline is 0.3 s).
        await until(lambda: gw.engine.cancelled == 2, 30, "engine requests cancelled")
        await until(lambda: gw.gateway.admission.in_flight == 0, 30, "slots freed")
        assert gw.engine.running == 0
        oks = await asyncio.gather(
            *(raw_request(gw.port, request_bytes("POST", "/v1/completions", ANSWER)) for _ in "ab")
        )
        assert [ok.status for ok in oks] == [200, 200]  # cap 2: the slots really are free
        for sock in socks:
            sock.close()


# -- routes ----------------------------------------------------------------------------------------


async def test_every_generation_route_goes_through_the_cap() -> None:
    named_in_issue = {"/v1/responses", "/v1/messages", "/invocations", "/v1/embeddings",
                      "/pooling", "/score", "/rerank", "/v1/audio/transcriptions"}  # fmt: skip
    assert named_in_issue <= set(CAPPED_POST_PATHS)
    async with gateway_on_stub(cap=1, queue=0) as gw:
        holder = asyncio.create_task(
            raw_request(gw.port, request_bytes("POST", "/v1/completions", HANG), 60)
        )
        await until(lambda: gw.engine.running == 1, 10, "slot held")
        for path in CAPPED_POST_PATHS:
            resp = await raw_request(gw.port, request_bytes("POST", path, ANSWER))
            assert resp.status == 429, path
            assert resp.error()["type"] == "TooManyRequestsError"
        assert gw.engine.paths() == ["/v1/completions"]  # none of them reached the engine
        gw.engine.release.set()
        assert (await holder).status == 200
        for path in CAPPED_POST_PATHS:
            resp = await raw_request(gw.port, request_bytes("POST", path, ANSWER))
            assert (resp.status, resp.json()["path"]) == (200, path)


async def test_read_routes_pass_uncapped() -> None:
    async with gateway_on_stub(cap=1, queue=0) as gw:
        holder = asyncio.create_task(
            raw_request(gw.port, request_bytes("POST", "/v1/chat/completions", HANG), 60)
        )
        await until(lambda: gw.engine.running == 1, 10, "slot held")
        for method, path in (("GET", "/v1/models"), ("GET", "/version"), ("POST", "/tokenize"),
                             ("POST", "/detokenize"), ("GET", "/v1/responses/resp_1"),
                             ("POST", "/v1/responses/resp_1/cancel")):  # fmt: skip
            resp = await raw_request(gw.port, request_bytes(method, path, b"{}"))
            assert (resp.status, resp.json()["path"]) == (200, path)
        gw.engine.release.set()
        await holder


UNKNOWN = [
    "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/collective_rpc", "/start_profile",
    "/stop_profile", "/sleep", "/wake_up", "/reset_prefix_cache", "/pause", "/update_weights",
    "/init_weight_transfer_engine", "/scale_elastic_ep", "/fault_tolerance/apply",
    "/server_info", "/v1/completions/render", "/v1/chat/completions/derender", "/docs",
    "/openapi.json", "/v1/completions/", "//v1/completions", "/V1/completions",
    "/v1/completionsx", "/v1/responses/a%2Fb", "/v1/realtime", "/abort_requests", "/",
]  # fmt: skip


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_unknown_routes_are_refused_not_forwarded(method: str) -> None:
    async with gateway_on_stub() as gw:
        for path in UNKNOWN:
            resp = await raw_request(gw.port, request_bytes(method, path, ANSWER))
            assert resp.status == 404, path
            assert resp.error()["type"] == "NotFoundError"
            assert "is not an API route this gateway serves" in str(resp.error()["message"])
        assert gw.engine.paths() == []
        assert gw.gateway.metrics.rejected.labels("unknown_route")._value.get() == len(UNKNOWN)


async def test_wrong_method_on_a_known_route_is_405_with_allow() -> None:
    async with gateway_on_stub() as gw:
        for method, path, allow in (("GET", "/v1/completions", "POST"),
                                    ("DELETE", "/v1/models", "GET"),
                                    ("PUT", "/v1/responses/r1/cancel", "POST")):  # fmt: skip
            resp = await raw_request(gw.port, request_bytes(method, path))
            assert (resp.status, resp.headers["allow"]) == (405, allow)
            assert resp.error()["message"] == f"{path} accepts {allow}, not {method}"
        assert gw.engine.paths() == []


async def test_encoded_spelling_is_still_capped_and_forwarded_canonically() -> None:
    async with gateway_on_stub(cap=1, queue=0) as gw:
        holder = asyncio.create_task(
            raw_request(gw.port, request_bytes("POST", "/v1/completions", HANG), 60)
        )
        await until(lambda: gw.engine.running == 1, 10, "slot held")
        resp = await raw_request(gw.port, request_bytes("POST", "/v1/%63ompletions", ANSWER))
        assert resp.status == 429  # the decoded path is the capped route: no way around it
        gw.engine.release.set()
        await holder
        resp = await raw_request(gw.port, request_bytes("POST", "/v1/%63ompletions?x=1", ANSWER))
        assert resp.status == 200
        assert (gw.engine.seen[-1].path, gw.engine.seen[-1].query) == ("/v1/completions", "x=1")


# -- drain -----------------------------------------------------------------------------------------


async def test_drain_grace_is_a_deadline_and_frees_the_slot() -> None:
    async with gateway_on_stub(cap=1, drain_grace_s=0.2) as gw:
        holder = asyncio.create_task(
            raw_request(gw.port, request_bytes("POST", "/v1/completions", HANG), 60)
        )
        await until(lambda: gw.engine.running == 1, 10, "request in flight")
        assert await gw.gateway.drain() is False  # the engine never answers: grace elapses
        await asyncio.wait_for(gw.runner.cleanup(), 10)  # at most 2 x 1 s by construction
        assert gw.gateway.admission.in_flight == 0
        await until(lambda: gw.engine.cancelled == 1, 10, "engine request cancelled")
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await holder


@pytest.mark.integration
async def test_sigterm_exits_within_drain_grace_plus_margin_with_streams_in_flight(
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    """The issue's case: --drain-grace 3 exited 66 s after SIGTERM. Now the worker exits within
    the grace plus SHUTDOWN_MARGIN_S (by construction) plus interpreter teardown (5 s allowed)."""
    grace = 3.0
    w = spawn_worker("--time-scale", "50", "--drain-grace", str(grace), "--read-timeout", "600")
    await wait_until_ready(f"{w.base}/ready")
    port = int(w.base.rsplit(":", 1)[1])
    first_token = asyncio.Event()
    received: list[bytes] = []

    async def endless_stream(session: aiohttp.ClientSession) -> None:
        body = {"model": MODEL, "prompt": "a b", "max_tokens": 3000, "stream": True}
        async with session.post(f"{w.base}/v1/completions", json=body) as resp:
            async for line in resp.content:
                received.append(line)
                first_token.set()

    async with aiohttp.ClientSession() as session:
        streams = [asyncio.create_task(endless_stream(session)) for _ in range(3)]
        stalled = await stalled_upload(port, 1000, b"{")  # and one upload that never finishes
        await asyncio.wait_for(first_token.wait(), 30)
        sent_at = time.monotonic()
        w.terminate()
        code = await asyncio.to_thread(w.proc.wait, grace + SHUTDOWN_MARGIN_S + 30)
        took = time.monotonic() - sent_at
        results = await asyncio.gather(*streams, return_exceptions=True)
        stalled[1].close()
    assert took <= grace + SHUTDOWN_MARGIN_S + 5, f"exited {took:.1f} s after SIGTERM"
    assert took >= grace - 0.5  # it did wait for the streams first
    assert code == 1  # not everything finished in the grace: the exit code says so
    assert all(isinstance(r, aiohttp.ClientError) for r in results)  # streams were cut, not done
    assert not any(line.strip() == b"data: [DONE]" for line in received)


async def test_expect_continue_is_answered_from_the_headers() -> None:
    """A body the gateway would refuse is refused before the client is told to send it."""
    async with gateway_on_stub(api_key="k3y") as gw:
        big = "POST /v1/completions HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\n"
        for extra, status in (("Authorization: Bearer k3y\r\nContent-Length: 90000000\r\n", 413),
                              ("Content-Length: 10\r\n", 401)):  # fmt: skip
            resp = await raw_request(gw.port, (big + extra + "\r\n").encode())
            assert (resp.status, resp.informational) == (status, 0)
        ok = (big + "Authorization: Bearer k3y\r\nContent-Length: 2\r\n\r\n{}").encode()
        resp = await raw_request(gw.port, ok)
        assert (resp.status, resp.informational) == (200, 1)
        assert gw.engine.paths() == ["/v1/completions"]

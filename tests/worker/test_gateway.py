"""Gateway behaviour over real HTTP: live cap changes, queue overflow, metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from tests.worker.conftest import MODEL, InProcessWorker, scrape

SLOW = {"time_scale": 20.0}  # ~150 ms steps: requests stay in flight while the test looks


async def until(check: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> float:
    """Poll `check` until true; returns the seconds it took, fails at the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not seen within {deadline_s} s")


async def gauge(w: InProcessWorker, name: str) -> float:
    return (await scrape(w.base))[name]


async def stream_request(session: aiohttp.ClientSession, base: str, tokens: int) -> int:
    body = {"model": MODEL, "prompt": "a b c", "max_tokens": tokens, "stream": True}
    async with session.post(f"{base}/v1/completions", json=body) as resp:
        if resp.status != 200:
            return resp.status
        async for _ in resp.content:
            pass
        return 200


@pytest.mark.parametrize("worker", [{**SLOW, "cap": 2, "queue": 1}], indirect=True)
async def test_queue_overflow_gets_429_with_retry_after(worker: InProcessWorker) -> None:
    async with aiohttp.ClientSession() as session:
        running = [asyncio.create_task(stream_request(session, worker.base, 400)) for _ in range(3)]

        async def settled() -> bool:
            m = await scrape(worker.base)
            return (m["tokenscale_gateway_in_flight"], m["tokenscale_gateway_queue_length"]) == (
                2, 1,
            )  # fmt: skip

        await until(settled, 5, "2 in flight and 1 queued")
        async with session.post(
            f"{worker.base}/v1/completions", json={"model": MODEL, "prompt": "x"}
        ) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"]["code"] == 429
        m = await scrape(worker.base)
        assert m['tokenscale_gateway_rejected_total{reason="queue_full"}'] == 1
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


@pytest.mark.parametrize("worker", [{**SLOW, "cap": 2, "queue": 10}], indirect=True)
async def test_cap_change_applies_live_within_two_seconds(worker: InProcessWorker) -> None:
    async with aiohttp.ClientSession() as session:
        running = [asyncio.create_task(stream_request(session, worker.base, 400)) for _ in range(5)]

        async def two_running_three_queued() -> bool:
            m = await scrape(worker.base)
            return (m["tokenscale_gateway_in_flight"], m["tokenscale_gateway_queue_length"]) == (
                2, 3,
            )  # fmt: skip

        await until(two_running_three_queued, 5, "2 in flight and 3 queued")
        worker.tuning_path.write_text(json.dumps({"concurrencyCap": 4, "queueLimit": 10}))

        async def raised() -> bool:
            m = await scrape(worker.base)
            return m["tokenscale_gateway_concurrency_cap"] == 4 and (
                m["tokenscale_gateway_in_flight"], m["tokenscale_gateway_queue_length"]
            ) == (4, 1)  # fmt: skip

        took = await until(raised, 2.0, "cap 4 with 4 in flight")
        assert took < 2.0
        # Lowering the cap leaves the 4 running requests alone; the queued one keeps waiting.
        worker.tuning_path.write_text(json.dumps({"concurrencyCap": 1}))

        async def lowered() -> bool:
            return await gauge(worker, "tokenscale_gateway_concurrency_cap") == 1

        await until(lowered, 2.0, "cap 1")
        m = await scrape(worker.base)
        assert (m["tokenscale_gateway_in_flight"], m["tokenscale_gateway_queue_length"]) == (4, 1)
        assert m["tokenscale_gateway_queue_limit"] == 10  # a key left out keeps its value
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def test_bad_tuning_file_keeps_current_limits(worker: InProcessWorker) -> None:
    worker.tuning_path.write_text('{"concurrencyCap": 0}')
    worker.tuning_path.write_text("not json")
    await asyncio.sleep(0)  # the watcher must keep running; check it still applies a good file
    worker.tuning_path.write_text('{"concurrencyCap": 7}')

    async def seven() -> bool:
        return await gauge(worker, "tokenscale_gateway_concurrency_cap") == 7

    await until(seven, 2.0, "cap 7")


async def test_metrics_include_gateway_and_engine(worker: InProcessWorker) -> None:
    async with aiohttp.ClientSession() as session:
        assert await stream_request(session, worker.base, 3) == 200
        async with session.get(f"{worker.base}/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    for name in (
        "tokenscale_gateway_queue_length", "tokenscale_gateway_in_flight",
        "tokenscale_gateway_concurrency_cap", "tokenscale_gateway_admitted_total",
        'tokenscale_gateway_rejected_total{reason="queue_full"}',
        "tokenscale_gateway_queue_wait_seconds_bucket",
        "vllm:time_to_first_token_seconds_bucket", "vllm:num_requests_running",
    ):  # fmt: skip
        assert name in text, name
    m = await scrape(worker.base)
    assert m["tokenscale_gateway_admitted_total"] == 1
    assert m['vllm:generation_tokens_total{engine="0",model_name="' + MODEL + '",pod="sim-0"}'] == 3


async def test_ready_follows_drain_and_health_stays_live(worker: InProcessWorker) -> None:
    async with aiohttp.ClientSession() as session:
        assert await worker.gateway.drain()
        async with session.get(f"{worker.base}/ready") as resp:
            assert resp.status == 503
        async with session.get(f"{worker.base}/health") as resp:
            assert resp.status == 200
        async with session.post(f"{worker.base}/v1/completions", json={"prompt": "x"}) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["type"] == "ServiceUnavailableError"


@pytest.mark.parametrize("worker", [{**SLOW, "cap": 1, "queue": 5}], indirect=True)
async def test_client_leaving_the_queue_frees_its_place(worker: InProcessWorker) -> None:
    async with aiohttp.ClientSession() as session:
        running = asyncio.create_task(stream_request(session, worker.base, 400))
        waiting = asyncio.create_task(stream_request(session, worker.base, 400))

        async def one_queued() -> bool:
            return await gauge(worker, "tokenscale_gateway_queue_length") == 1

        await until(one_queued, 5, "1 queued")
        waiting.cancel()  # the client hangs up while queued

        async def none_queued() -> bool:
            return await gauge(worker, "tokenscale_gateway_queue_length") == 0

        await until(none_queued, 2, "the queue emptied")
        assert await gauge(worker, "tokenscale_gateway_in_flight") == 1
        running.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)

        async def engine_idle() -> bool:
            return worker.sim.engine.num_running == 0 and worker.gateway.admission.in_flight == 0

        # The in-flight client hung up too: its slot and the engine's batch slot are freed.
        await until(engine_idle, 2, "slot and engine freed")

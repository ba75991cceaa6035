"""The worker as a real process: SIGTERM drain, and metrics that agree with what clients see."""

from __future__ import annotations

import asyncio
import bisect
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.worker.conftest import MODEL, WorkerProcess, scrape, wait_until_ready
from tokenscale_worker.sim.metrics import INTER_TOKEN_LATENCY_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS

pytestmark = pytest.mark.integration


@dataclass
class StreamLog:
    status: int = 0
    sent_at: float = 0.0
    token_times: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    done: bool = False


async def stream(
    session: aiohttp.ClientSession, base: str, tokens: int, log: StreamLog,
    on_first: Callable[[], None] | None = None,
) -> StreamLog:  # fmt: skip
    body = {"model": MODEL, "prompt": "w " * 40, "max_tokens": tokens, "stream": True}
    log.sent_at = time.monotonic()
    async with session.post(f"{base}/v1/completions", json=body) as resp:
        log.status = resp.status
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            if line == b"data: [DONE]":
                log.done = True
                continue
            choice = json.loads(line[6:])["choices"][0]
            log.token_times.append(time.monotonic())
            if len(log.token_times) == 1 and on_first is not None:
                on_first()
            log.finish_reason = choice["finish_reason"] or log.finish_reason
    return log


async def test_sigterm_drains_100_streams_without_truncation(
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    w = spawn_worker("--time-scale", "5", "--drain-grace", "60")
    await wait_until_ready(f"{w.base}/ready")
    started = 0
    all_started = asyncio.Event()

    def first() -> None:
        nonlocal started
        started += 1
        if started == 100:
            all_started.set()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        logs = [StreamLog() for _ in range(100)]
        tasks = [asyncio.create_task(stream(session, w.base, 60, lg, first)) for lg in logs]
        await asyncio.wait_for(all_started.wait(), timeout=20)
        w.terminate()
        deadline = time.monotonic() + 2
        while True:  # readiness must turn false at once
            async with session.get(f"{w.base}/ready") as resp:
                if resp.status == 503:
                    break
            assert time.monotonic() < deadline, "/ready still 200 two seconds after SIGTERM"
            await asyncio.sleep(0.05)
        async with session.post(f"{w.base}/v1/completions", json={"prompt": "x"}) as resp:
            assert resp.status == 503
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    assert all(lg.status == 200 for lg in logs)
    assert [len(lg.token_times) for lg in logs] == [60] * 100, "a stream was truncated"
    assert all(lg.done and lg.finish_reason == "length" for lg in logs)
    assert await asyncio.to_thread(w.proc.wait, 30) == 0


def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    return bisect.bisect_left(bounds, value)


def histogram_median_bucket(metrics: dict[str, float], name: str, bounds: tuple[float, ...]) -> int:
    counts = {
        float(key.split('le="')[1].split('"')[0]): v
        for key, v in metrics.items()
        if key.startswith(name + "_bucket")
    }
    total = counts[float("inf")]
    for i, bound in enumerate(bounds):
        if counts[bound] >= total / 2:
            return i
    return len(bounds)


async def test_exported_latency_histograms_match_client_measurements(
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    w = spawn_worker("--time-scale", "3")
    await wait_until_ready(f"{w.base}/ready")
    n, tokens = 200, 30
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # Warm-up round: opens the 200 client and 200 gateway-to-engine connections, so the
        # measured round times the serving path rather than TCP and TLS-free handshakes.
        await asyncio.gather(*(stream(session, w.base, 1, StreamLog()) for _ in range(n)))
        before = await scrape(w.base)
        logs = await asyncio.gather(
            *(stream(session, w.base, tokens, StreamLog()) for _ in range(n))
        )
    after = await scrape(w.base)
    metrics = {k: v - before.get(k, 0.0) for k, v in after.items()}
    assert all(len(lg.token_times) == tokens for lg in logs)
    ttfts = [lg.token_times[0] - lg.sent_at for lg in logs]
    itls = [b - a for lg in logs for a, b in zip(lg.token_times, lg.token_times[1:], strict=False)]
    labels = f'{{engine="0",model_name="{MODEL}"}}'
    assert metrics[f"vllm:time_to_first_token_seconds_count{labels}"] == n
    assert metrics[f"vllm:inter_token_latency_seconds_count{labels}"] == n * (tokens - 1)
    assert metrics[f"vllm:generation_tokens_total{labels}"] == n * tokens
    # Medians agree to within one histogram bucket (the histogram's resolution).
    for name, bounds, measured in (
        ("vllm:time_to_first_token_seconds", TIME_TO_FIRST_TOKEN_BUCKETS, ttfts),
        ("vllm:inter_token_latency_seconds", INTER_TOKEN_LATENCY_BUCKETS, itls),
    ):
        exported = histogram_median_bucket(metrics, name, bounds)
        client = bucket_index(bounds, statistics.median(measured))
        assert abs(exported - client) <= 1, (name, exported, client, statistics.median(measured))
    # And the means agree closely: the client sees what the engine reports plus the proxy hop.
    ttft_mean = metrics[f"vllm:time_to_first_token_seconds_sum{labels}"] / n
    assert statistics.mean(ttfts) == pytest.approx(ttft_mean, rel=0.25, abs=0.02)
    itl_mean = metrics[f"vllm:inter_token_latency_seconds_sum{labels}"] / (n * (tokens - 1))
    assert statistics.mean(itls) == pytest.approx(itl_mean, rel=0.25, abs=0.005)

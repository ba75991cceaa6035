"""The worker as a real process: SIGTERM drain, and metrics that agree with what clients see."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.worker.conftest import MODEL, WorkerProcess, scrape, wait_until_ready
from tokenscale_contract.histogram_buckets import (
    INTER_TOKEN_LATENCY_BUCKETS,
    TIME_TO_FIRST_TOKEN_BUCKETS,
)
from tokenscale_sim.profile import build_profile

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
        while True:  # readiness turns false while the streams are still being drained
            async with session.get(f"{w.base}/ready") as resp:
                if resp.status == 503:
                    break
            assert not any(lg.done for lg in logs), "/ready still 200 after a stream finished"
            await asyncio.sleep(0.05)
        async with session.post(f"{w.base}/v1/completions", json={"prompt": "x"}) as resp:
            assert resp.status == 503
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    assert all(lg.status == 200 for lg in logs)
    assert [len(lg.token_times) for lg in logs] == [60] * 100, "a stream was truncated"
    assert all(lg.done and lg.finish_reason == "length" for lg in logs)
    assert await asyncio.to_thread(w.proc.wait, 30) == 0


def cumulative(metrics: dict[str, float], name: str) -> dict[float, float]:
    """The histogram's cumulative bucket counts, by upper bound."""
    return {
        float(key.split('le="')[1].split('"')[0]): v
        for key, v in metrics.items()
        if key.startswith(name + "_bucket")
    }


def count_at_most(values: list[float], bound: float) -> int:
    return sum(1 for v in values if v <= bound)


async def test_exported_latency_histograms_agree_with_client_measurements(
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    """What the engine exports is bounded on both sides by construction, whatever the load:
    - above by what the client saw: the engine's time to first token starts after the request
      left the client and ends before the token reached it, so per request engine <= client and,
      bucket by bucket, at least as many engine observations as client ones fall below any bound;
      TTFT plus all ITLs of a request is the engine's part of the client's whole stream time;
    - below by the engine model: no step is shorter than an idle one-sequence decode step
      (`fixed + per_seq + weights`, times the time scale), so no ITL or TTFT falls below it.
    A wrong unit, a timer started late or a missing observation breaks one of these."""
    time_scale = 3.0
    w = spawn_worker("--time-scale", str(time_scale))
    await wait_until_ready(f"{w.base}/ready")
    n, tokens = 200, 30
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # Warm-up round: opens the client and gateway-to-engine connections first.
        await asyncio.gather(*(stream(session, w.base, 1, StreamLog()) for _ in range(n)))
        before = await scrape(w.base)
        logs = await asyncio.gather(
            *(stream(session, w.base, tokens, StreamLog()) for _ in range(n))
        )
    after = await scrape(w.base)
    metrics = {k: v - before.get(k, 0.0) for k, v in after.items()}
    assert all(len(lg.token_times) == tokens for lg in logs)
    labels = f'{{engine="0",model_name="{MODEL}"}}'
    ttft_name, itl_name = "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds"
    assert metrics[f"{ttft_name}_count{labels}"] == n
    assert metrics[f"{itl_name}_count{labels}"] == n * (tokens - 1)
    assert metrics[f"vllm:generation_tokens_total{labels}"] == n * tokens

    ours = {k: v for k, v in metrics.items() if f'model_name="{MODEL}"' in k}
    client_ttfts = [lg.token_times[0] - lg.sent_at for lg in logs]
    engine_ttft = cumulative(ours, ttft_name)
    for bound in TIME_TO_FIRST_TOKEN_BUCKETS:
        assert engine_ttft[bound] >= count_at_most(client_ttfts, bound), (bound, engine_ttft)
    engine_busy = metrics[f"{ttft_name}_sum{labels}"] + metrics[f"{itl_name}_sum{labels}"]
    client_streams = sum(lg.token_times[-1] - lg.sent_at for lg in logs)
    assert engine_busy <= client_streams, (engine_busy, client_streams)

    p = build_profile("llama-3.1-8b", "h100-80gb", time_scale=time_scale)
    floor = (p.fixed_s + p.per_seq_s + p.weight_s) * time_scale
    engine_itl = cumulative(ours, itl_name)
    below = max((b for b in INTER_TOKEN_LATENCY_BUCKETS if b < floor), default=None)
    if below is not None:
        assert engine_itl[below] == 0, (floor, below, engine_itl)
    assert metrics[f"{itl_name}_sum{labels}"] >= floor * n * (tokens - 1)
    assert metrics[f"{ttft_name}_sum{labels}"] >= floor * n

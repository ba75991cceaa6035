"""Load generator: streams OpenAI completions at a service's front and records what the client
sees (TTFT, every inter-token gap, tokens received, how each request ended).

Load is a sequence of phases, each open-loop (`rate` requests/s, evenly spaced) or closed-loop
(`concurrency` streams, each sending its next request when the last one ends), switched live
from another thread (`BackgroundLoad.set`) or replayed from a profile / a trace by the CLI:

    python -m e2e.fleet.loadgen --url http://127.0.0.1:PORT --profile 30:1,60:4,60:1
    python -m e2e.fleet.loadgen --url ... --profile 60:c=8 --prompt 1500 --max-tokens 256
    python -m e2e.fleet.loadgen --url ... --trace azure.csv --duration 120 --rate-scale 0.05

Everything is bounded: at most `max_requests` requests, `max_in_flight` at once, and a
`request_timeout_s` per request. A closed-loop stream refused with 429 or 503 waits the
response's Retry-After (at most 10 s) before its next request, as a well-behaved client does.
A request counts as complete only when it ended with HTTP 200, the `[DONE]` marker and exactly
`max_tokens` tokens (the engine's usage figure where it sends one, else one per text chunk; every
request asks `ignore_eos`, so neither the simulator nor real vLLM stops early), so a truncated
stream is a failure, not a short answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float = 0.0  # open loop, requests per second
    concurrency: int = 0  # closed loop, streams
    prompt_tokens: int = 64
    max_tokens: int = 32
    duration_s: float = 0.0  # profiles only


@dataclass
class RequestRecord:
    phase: str
    sent_at: float  # wall clock
    expected_tokens: int
    status: int | None = None
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    tokens: int = 0
    done_marker: bool = False
    finish_reason: str | None = None
    error: str | None = None
    ended_at: float | None = None
    retry_after_s: float | None = None
    # completion_tokens of the stream's usage chunk: real vLLM may send a token whose text is
    # empty (a partial UTF-8 sequence held back), so text chunks alone undercount.
    usage_tokens: int | None = None

    @property
    def complete(self) -> bool:
        generated = self.tokens if self.usage_tokens is None else self.usage_tokens
        return (
            self.status == 200
            and self.done_marker
            and self.error is None
            and generated == self.expected_tokens
        )

    @property
    def first_token_at(self) -> float | None:
        return None if self.ttft_s is None else self.sent_at + self.ttft_s


def _parse_sse(line: bytes, rec: RequestRecord, now: float, last: list[float]) -> None:
    """One `data:` line: count a token, note its gap, the finish reason and the end marker."""
    if not line.startswith(b"data: "):
        return
    payload = line[6:].strip()
    if payload == b"[DONE]":
        rec.done_marker = True
        return
    chunk = json.loads(payload)
    usage = chunk.get("usage") or {}
    if isinstance(usage.get("completion_tokens"), int):
        rec.usage_tokens = usage["completion_tokens"]
    choices = chunk.get("choices") or []
    if not choices or not choices[0].get("text"):
        return
    rec.tokens += 1
    if rec.ttft_s is None:
        rec.ttft_s = now - rec.sent_at
    else:
        rec.gaps_s.append(now - last[0])
    last[0] = now
    rec.finish_reason = choices[0].get("finish_reason") or rec.finish_reason


class LoadGenerator:
    def __init__(
        self,
        url: str,
        *,
        max_requests: int = 20_000,
        max_in_flight: int = 256,
        request_timeout_s: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/completions"
        self.max_requests = max_requests
        self.max_in_flight = max_in_flight
        self.request_timeout_s = request_timeout_s
        self.phase = Phase("idle")
        self.phase_started: list[tuple[str, float]] = []
        self.records: list[RequestRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_loop = 0
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def set_phase(self, phase: Phase) -> float:
        at = time.time()
        self.phase = phase
        self.phase_started.append((phase.name, at))
        self._wake.set()
        return at

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def streams(self) -> int:
        """Closed-loop requests in flight."""
        return self._closed_loop

    async def run(self, stop: asyncio.Event, drain_timeout_s: float = 180.0) -> None:
        """Send until `stop`, then wait for what is in flight (up to `drain_timeout_s`)."""
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s, sock_connect=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            await self._drive(stop)
            if self._tasks:
                _done, pending = await asyncio.wait(set(self._tasks), timeout=drain_timeout_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _drive(self, stop: asyncio.Event) -> None:
        next_at = time.monotonic()
        current = self.phase
        while not stop.is_set() and len(self.records) < self.max_requests:
            if self.phase is not current:  # a new phase starts its own arrival clock
                current, next_at = self.phase, time.monotonic()
            now = time.monotonic()
            if current.rate > 0 and now >= next_at:
                next_at += 1.0 / current.rate
                self._send(current, closed=False)
                continue
            while self._closed_loop < current.concurrency and self._room():
                self._send(current, closed=True)
            wait = next_at - now if current.rate > 0 else 0.5
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.001, min(wait, 0.5)))

    def _room(self) -> bool:
        return len(self._tasks) < self.max_in_flight and len(self.records) < self.max_requests

    def _send(self, phase: Phase, closed: bool) -> None:
        if not self._room():
            return  # bounded: an open loop beyond max_in_flight drops arrivals
        rec = RequestRecord(phase.name, time.time(), phase.max_tokens)
        self.records.append(rec)
        if closed:
            self._closed_loop += 1
        task = asyncio.get_running_loop().create_task(self._request(phase, rec, closed))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, closed))

    def _finished(self, task: asyncio.Task[None], closed: bool) -> None:
        self._tasks.discard(task)
        if closed:
            self._closed_loop -= 1
        self._wake.set()

    async def _request(self, phase: Phase, rec: RequestRecord, closed: bool = False) -> None:
        await self._exchange(phase, rec)
        if closed and rec.status in (429, 503):
            # A client honours Retry-After before its next request, as the openai client does;
            # without it a closed loop turns one full queue into thousands of refusals a second.
            await asyncio.sleep(min(MAX_BACKOFF_S, rec.retry_after_s or 1.0))

    async def _exchange(self, phase: Phase, rec: RequestRecord) -> None:
        assert self._session is not None
        body = {
            "prompt": " ".join(["hello"] * phase.prompt_tokens),
            "max_tokens": phase.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
        }
        last = [0.0]
        try:
            async with self._session.post(self.url, json=body) as resp:
                rec.status = resp.status
                with contextlib.suppress(ValueError):
                    rec.retry_after_s = float(resp.headers.get("Retry-After", ""))
                if resp.status != 200:
                    rec.error = (await resp.text())[:300]
                    return
                async for line in resp.content:
                    _parse_sse(line, rec, time.time(), last)
        except asyncio.CancelledError:
            rec.error = "cancelled: still running when the load generator stopped"
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            rec.error = f"{type(err).__name__}: {err}"
        finally:
            rec.ended_at = time.time()


class BackgroundLoad:
    """A LoadGenerator on its own thread and event loop, driven from a (synchronous) test."""

    def __init__(self, url: str, **options: Any) -> None:
        self.gen: LoadGenerator | None = None
        self._url, self._options = url, options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, phase: Phase) -> float:
        self._thread = threading.Thread(target=self._main, name="loadgen", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("load generator thread did not start")
        return self.set(phase)

    def _main(self) -> None:
        async def body() -> None:
            self.gen = LoadGenerator(self._url, **self._options)
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self.gen.run(self._stop)

        asyncio.run(body())

    def set(self, phase: Phase) -> float:
        """Switch to `phase` now; returns the wall-clock time of the switch."""
        assert self._loop is not None and self.gen is not None
        gen = self.gen
        at: float = asyncio.run_coroutine_threadsafe(
            _call(gen.set_phase, phase), self._loop
        ).result(5)
        return at

    def streams(self) -> int:
        """Closed-loop requests in flight now."""
        return self.gen.streams if self.gen else 0

    def stop(self, timeout_s: float = 200.0) -> list[RequestRecord]:
        """Stop sending, wait for in-flight requests, return every record (again: no-op)."""
        running = self._thread is not None and self._thread.is_alive()
        if running and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"load generator still running after {timeout_s} s")
        return self.records()

    def records(self) -> list[RequestRecord]:
        return list(self.gen.records) if self.gen else []


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


# ---- reporting --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def summarize(records: Iterable[RequestRecord]) -> dict[str, Any]:
    recs = list(records)
    ttft = [r.ttft_s for r in recs if r.ttft_s is not None]
    gaps = [g for r in recs for g in r.gaps_s]
    statuses: dict[str, int] = {}
    for r in recs:
        key = str(r.status) if r.error is None or r.status != 200 else f"{r.status}+error"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "requests": len(recs),
        "complete": sum(1 for r in recs if r.complete),
        "statuses": statuses,
        "ttftP50": percentile(ttft, 50),
        "ttftP95": percentile(ttft, 95),
        "itlP50": percentile(gaps, 50),
        "itlP95": percentile(gaps, 95),
    }


# ---- CLI --------------------------------------------------------------------------------------


def parse_profile(text: str, prompt: int, max_tokens: int) -> list[Phase]:
    """`30:1,60:4` = 30 s at 1 req/s then 60 s at 4; `60:c=8` = 60 s of 8 closed-loop streams."""
    phases = []
    for i, item in enumerate(p for p in text.split(",") if p):
        duration, _, load = item.partition(":")
        closed = load.startswith("c=")
        value = float(load.removeprefix("c="))
        phases.append(
            Phase(
                f"p{i}",
                rate=0.0 if closed else value,
                concurrency=int(value) if closed else 0,
                prompt_tokens=prompt,
                max_tokens=max_tokens,
                duration_s=float(duration),
            )
        )
    return phases


async def replay(url: str, phases: Sequence[Phase], **options: Any) -> LoadGenerator:
    gen = LoadGenerator(url, **options)
    stop = asyncio.Event()
    runner = asyncio.create_task(gen.run(stop))
    for phase in phases:
        gen.set_phase(phase)
        await asyncio.sleep(phase.duration_s)
    stop.set()
    await runner
    return gen


async def replay_trace(url: str, path: str, duration: float, rate_scale: float) -> LoadGenerator:
    """Requests at the trace's arrival times (via tokenscale.bench's readers), one each."""
    from tokenscale.bench import traces

    trace = traces.load(path).scaled(rate_scale=rate_scale, duration=duration, max_tokens=4096)
    gen = LoadGenerator(url)
    stop = asyncio.Event()
    runner = asyncio.create_task(gen.run(stop))
    began = time.monotonic()
    for at, prompt, output in zip(trace.arrival, trace.prompt, trace.output, strict=True):
        await asyncio.sleep(max(0.0, began + float(at) - time.monotonic()))
        gen._send(Phase("trace", prompt_tokens=int(prompt), max_tokens=int(output)), False)
    stop.set()
    await runner
    return gen


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.fleet.loadgen", description=__doc__)
    p.add_argument("--url", required=True, help="a service front (or any OpenAI base URL)")
    p.add_argument("--profile", default="30:1", help="DURATION:RATE or DURATION:c=STREAMS, ...")
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens per request")
    p.add_argument("--max-tokens", type=int, default=32, help="output tokens per request")
    p.add_argument("--trace", default=None, help="Azure CSV or Mooncake JSONL trace to replay")
    p.add_argument("--duration", type=float, default=120.0, help="trace seconds to replay")
    p.add_argument("--rate-scale", type=float, default=1.0, help="trace rate multiplier")
    p.add_argument("--json", default=None, help="write every request record here")
    a = p.parse_args(argv)
    if a.trace:
        gen = asyncio.run(replay_trace(a.url, a.trace, a.duration, a.rate_scale))
    else:
        gen = asyncio.run(replay(a.url, parse_profile(a.profile, a.prompt, a.max_tokens)))
    print(json.dumps(summarize(gen.records), indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump([asdict(r) for r in gen.records], fh)
    return 0 if all(r.complete for r in gen.records) else 1


if __name__ == "__main__":
    sys.exit(main())

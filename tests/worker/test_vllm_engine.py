"""The production path for real: `tokenscale-worker serve --engine vllm` runs real vLLM (CPU build,
the tiny model) as its child, with the argument list the launcher builds from the worker config the
operator renders; the `openai` client talks to the gateway in front of it.

One engine for the module (it takes about a minute to start); the drain test stops it, so it runs
last. Built by `make setup` (parts vllm and model); nothing here installs anything.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest
from prometheus_client import generate_latest

from tests.worker.conftest import scrape, wait_until_ready
from tests.worker.metric_parity import autoscaler_families, prometheus_scraping, shapes
from tests.worker.vllm_worker import SERVED, VllmWorker, rendered_config, vllm_worker
from tokenscale.adapters.prometheus import GAUGES, RATES, PrometheusSignals
from tokenscale.domain.signals import ServiceSignals
from tokenscale_sim.compare import StepCosts, TraceRequest, measured_profile, simulate
from tokenscale_sim.metrics import SimMetrics
from tokenscale_worker.engine_profile import CPU_TEST

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
# Start-up: ~50 s on a quiet 2-core machine, 150 s seen while other builds ran; a deadline, not a
# measurement.
START_DEADLINE_S = 600.0
# No random end-of-sequence from the random model: every request yields exactly max_tokens.
EXACT = {"ignore_eos": True}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmWorker]:
    with vllm_worker(tmp_path_factory.mktemp("vllm-worker")) as worker:
        try:
            asyncio.run(wait_until_ready(f"{worker.base}/ready", START_DEADLINE_S))
        except AssertionError:
            raise AssertionError(worker.log_path.read_text()[-4000:]) from None
        yield worker


def client(worker: VllmWorker) -> openai.AsyncOpenAI:
    # No retries: a 429 or 503 must reach the test, not be retried away.
    return openai.AsyncOpenAI(base_url=f"{worker.base}/v1", api_key="unused", max_retries=0)


async def test_completion(engine: VllmWorker) -> None:
    async with client(engine) as c:
        out = await c.completions.create(
            model=SERVED, prompt="The autoscaler", max_tokens=12, extra_body=EXACT
        )
    assert out.model == SERVED
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 12
    assert out.usage.prompt_tokens > 0


async def test_chat_completion(engine: VllmWorker) -> None:
    async with client(engine) as c:
        out = await c.chat.completions.create(
            model=SERVED,
            messages=[{"role": "user", "content": "How many replicas?"}],
            max_tokens=10,
            extra_body=EXACT,
        )
    assert out.choices[0].message.role == "assistant"
    assert out.usage is not None and out.usage.completion_tokens == 10
    # The chat template added the role markers: more prompt tokens than the text alone.
    assert out.usage.prompt_tokens > 4


async def test_streaming_relays_what_the_engine_generates(engine: VllmWorker) -> None:
    """Greedy decoding is deterministic: the streamed text equals the same request unstreamed."""
    ask = {"model": SERVED, "prompt": "tokens per second", "max_tokens": 24, "temperature": 0.0}
    async with client(engine) as c:
        whole = await c.completions.create(**ask, extra_body=EXACT)  # type: ignore[call-overload]
        stream = await c.completions.create(  # type: ignore[call-overload]
            **ask, stream=True, stream_options={"include_usage": True}, extra_body=EXACT
        )
        pieces, usage, chunks = [], None, 0
        async for chunk in stream:
            chunks += 1
            if chunk.choices:
                pieces.append(chunk.choices[0].text)
            usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == 24
    assert chunks > 2, "the answer came as one piece, not streamed"
    assert "".join(pieces) == whole.choices[0].text


class FirstTokens:
    """Set when `target` streams have had their first token."""

    def __init__(self, target: int) -> None:
        self.target, self.count, self.reached = target, 0, asyncio.Event()

    def seen(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.reached.set()


Sample = tuple[float, float, float]


@dataclass
class Stream:
    first: FirstTokens | None = None
    tokens: int = 0
    first_at: float | None = None
    finished: str | None = None
    error: str | None = None
    retry_after: int | None = None


async def run_stream(c: openai.AsyncOpenAI, log: Stream, max_tokens: int) -> Stream:
    try:
        stream = await c.completions.create(
            model=SERVED,
            prompt="queue " * 8,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=EXACT,
        )
        async for chunk in stream:
            if chunk.choices:
                if log.first_at is None and log.first is not None:
                    log.first.seen()
                log.first_at = log.first_at or time.monotonic()
                log.finished = chunk.choices[0].finish_reason or log.finished
            if chunk.usage:
                log.tokens = chunk.usage.completion_tokens
    except openai.APIStatusError as err:
        log.error = repr(err)
        retry = err.response.headers.get("Retry-After")
        log.retry_after = int(retry) if retry else None
    except openai.APIError as err:
        log.error = repr(err)
    return log


async def gateway_sample(base: str) -> Sample:
    """(concurrency cap, in flight, queued), as the gateway's /ready reports them."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/ready") as resp:
        load = await resp.json()
    return load["concurrencyCap"], load["inFlight"], load["queued"]


async def tuning_applied(base: str, cap: int, queue_limit: int) -> None:
    """Until the gateway runs with this cap and queue limit (both, from one tuning file)."""
    while True:
        async with aiohttp.ClientSession() as session, session.get(f"{base}/ready") as resp:
            load = await resp.json()
        if (load["concurrencyCap"], load["queueLimit"]) == (cap, queue_limit):
            return
        await asyncio.sleep(0.05)


async def test_lowered_cap_is_followed_while_streams_run(engine: VllmWorker) -> None:
    """96 streams of 400 tokens. The queue is built at cap 1, where the gateway queues whatever
    this client sends faster than one stream at a time finishes (a fact of the server, not of
    this client's speed: at cap 8 a client slowed by a busy machine once never saw 32 waiting
    before the engine had finished everything). The cap then goes to 4 and, once the gateway
    reports more than 2 in flight with requests still waiting, drops to 2. By construction
    (in-flight requests are never cut, admissions pause until in flight < cap): from the moment
    the gateway reports cap 2, in flight never rises above max(2, its previous value) and comes
    down to 2 while requests still wait. Then the cap goes back up to let the rest finish
    quickly, and every request completes in full."""
    engine.set_tuning(1, 128)
    await tuning_applied(engine.base, 1, 128)
    async with client(engine) as c:
        logs = [Stream() for _ in range(96)]
        tasks = [asyncio.create_task(run_stream(c, lg, 400)) for lg in logs]
        await until(lambda s: s[2] >= 48, engine.base)
        engine.set_tuning(4, 128)
        await until(lambda s: s[0] == 4 and s[1] > 2 and s[2] >= 16, engine.base)
        engine.set_tuning(2, 128)
        samples = [await until(lambda s: s[0] == 2, engine.base)]
        while samples[-1][1] > 2 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.05)
            samples.append(await gateway_sample(engine.base))
        engine.set_tuning(64, 128)
        await asyncio.gather(*tasks)
    in_flight = [s[1] for s in samples]
    # Requests still waited when the gateway took the new cap (in flight may already be down to
    # it: a 400-token stream takes about a second here, as long as the tuning file's poll).
    assert samples[0][2] > 0, f"the queue emptied before the cap changed: {samples[:5]}"
    for before, after in itertools.pairwise(in_flight):
        assert after <= max(2, before), f"admitted above the lowered cap: {in_flight}"
    _cap, running, waiting = samples[-1]
    assert running <= 2 and waiting > 0, f"in flight did not come down to the cap: {samples}"
    assert [(lg.error, lg.tokens, lg.finished) for lg in logs] == [(None, 400, "length")] * 96


async def test_overflow_is_refused_with_429(engine: VllmWorker) -> None:
    """Cap 1, queue 1, ten requests of 400 tokens sent at once: while the first runs (400 engine
    steps) at most one more may wait, so the others get 429 with Retry-After; every accepted
    request completes in full, none is lost."""
    engine.set_tuning(1, 1)
    await until(lambda s: s[0] == 1, engine.base)
    async with client(engine) as c:
        logs = [Stream() for _ in range(10)]
        await asyncio.gather(*(run_stream(c, lg, 400) for lg in logs))
    refused = [lg for lg in logs if lg.error is not None]
    accepted = [lg for lg in logs if lg.error is None]
    assert refused, "no request was refused with cap 1 and queue 1"
    assert all(lg.error and "RateLimitError" in lg.error for lg in refused), refused[0].error
    assert all(lg.retry_after is not None and 1 <= lg.retry_after <= 60 for lg in refused)
    assert len(accepted) >= 2 and all(lg.tokens == 400 for lg in accepted)
    engine.set_tuning(8, 64)
    await until(lambda s: s[0] == 8, engine.base)


async def test_a_burst_beyond_max_num_seqs_queues_as_in_the_simulator(engine: VllmWorker) -> None:
    """16 equal requests of 400 tokens at once against vLLM's 8 sequences (the gateway's cap is
    above 16): no engine step decodes more than 8 sequences, so the burst takes at least the
    simulator's two waves of 400 steps, in vLLM as in the simulator's scheduler.

    Counted in engine steps (vLLM's `iteration_tokens` histogram), not seconds: on a busy machine
    the 16 requests can reach the engine spread over a second, which changes how long each waited
    but never lets a step carry more than the cap."""
    engine.set_tuning(64, 64)
    await tuning_applied(engine.base, 64, 64)
    before = await scrape(engine.base)
    async with client(engine) as c:
        logs = [Stream() for _ in range(16)]
        await asyncio.gather(*(run_stream(c, lg, 400) for lg in logs))
    after = await scrape(engine.base)
    assert [lg.tokens for lg in logs] == [400] * 16

    def delta(prefix: str) -> float:
        keys = [k for k in after if k.startswith(prefix)]
        assert keys, f"vLLM exports no {prefix}"
        return float(sum(after[k] - before.get(k, 0.0) for k in keys))

    max_num_seqs = rendered_and_applied()["max_num_seqs"]
    steps = delta("vllm:iteration_tokens_total_count")
    within_cap = delta(f'vllm:iteration_tokens_total_bucket{{engine="0",le="{max_num_seqs:.1f}"')
    generated = delta("vllm:generation_tokens_total")
    sim_profile = measured_profile(
        StepCosts(fixed_s=0.003, per_seq_s=0.0, per_token_s=0.0),
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=2048,
        max_model_len=512,
        kv_capacity_tokens=1 << 20,
    )
    burst = [TraceRequest(f"r{i}", 0.0, 16, 400) for i in range(16)]
    sim = simulate(sim_profile, burst)
    waited_in_sim = sum(1 for ttft in sim.ttft.values() if ttft > 0.3)
    assert waited_in_sim == 16 - max_num_seqs
    assert sim.steps >= 16 * 400 // max_num_seqs
    assert generated == 16 * 400
    # Only a step that prefills a prompt carries more tokens than there are sequences; each of the
    # 16 prompts (16 tokens, far under the step budget) is prefilled in one step.
    assert steps - within_cap <= 16, f"{steps - within_cap} steps above {max_num_seqs} tokens"
    # Had vLLM run all 16 at once, the burst would have taken about 400 steps.
    assert steps >= sim.steps, f"vLLM took {steps} steps, the simulator's two waves {sim.steps}"


def rendered_and_applied() -> dict[str, int]:
    """The limits vLLM runs with: the operator's config as the cpu-test profile changes it."""
    limits = {"max_num_seqs": CPU_TEST.config_overrides["max_num_seqs"]}
    assert rendered_config()["maxNumSeqs"] != limits["max_num_seqs"]  # the profile did change it
    return limits


async def engine_metrics_text(worker: VllmWorker) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{worker.base}/metrics") as resp:
        return await resp.text()


async def test_simulator_exports_what_the_autoscaler_reads_as_vllm_does(engine: VllmWorker) -> None:
    """For every engine family the Prometheus adapter queries: same type, label names and
    histogram buckets in the simulator as in this vLLM (a vLLM bump that renames or reshapes one
    fails here). Alternatives the adapter joins with `or` need the current name in vLLM."""
    async with client(engine) as c:  # at least one request, so every labelled series exists
        await c.completions.create(model=SERVED, prompt="parity", max_tokens=3, extra_body=EXACT)
    real = shapes(await engine_metrics_text(engine))
    max_model_len = rendered_config()["maxModelLen"]
    # The worker started vLLM with the rendered config's buckets; the simulator gets the same.
    buckets = rendered_config()["histogramBuckets"]
    sim = shapes(
        generate_latest(SimMetrics(SERVED, max_model_len, None, buckets).registry).decode()
    )
    checked = []
    for group in autoscaler_families():
        current = group[0]
        assert current in real, f"vLLM no longer exports {current}; the adapter queries it"
        for name in group:
            if name in real:
                assert sim.get(name) == real[name], f"{name}: simulator {sim.get(name)}"
                checked.append(name)
    # the first name of every group, and any older alternative vLLM still exports besides
    assert {g[0] for g in autoscaler_families()} <= set(checked), checked


def test_adapter_queries_return_every_signal_from_real_vllm(
    engine: VllmWorker, tmp_path: Path
) -> None:
    """A real Prometheus scrapes the gateway (gateway and vLLM metrics in one scrape) under
    steady traffic; one fetch of the adapter returns every histogram, rate and gauge."""
    engine.set_tuning(8, 64)
    asyncio.run(until(lambda s: s[0] == 8, engine.base))
    labels = {"namespace": "team-a", "tokenscale_io_service": "tiny"}
    target = engine.base.removeprefix("http://")
    stop = threading.Event()
    sender = threading.Thread(target=steady_traffic, args=(engine.base, stop), daemon=True)
    with prometheus_scraping(target, labels, tmp_path) as url:
        sender.start()
        try:
            signals = fetch_until_complete(PrometheusSignals(url, window="30s"), ("team-a", "tiny"))
        finally:
            stop.set()
            sender.join(timeout=60)
    # The histograms and rates were checked while fetching; the gauges need no movement.
    assert set(GAUGES) <= set(signals.gauges), sorted(signals.gauges)
    assert signals.gauges["cap"] == 8 and signals.gauges["targets_up"] == 1


def steady_traffic(base: str, stop: threading.Event) -> None:
    c = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    for _ in range(5000):  # bounded even if `stop` is never set
        if stop.is_set():
            return
        c.completions.create(model=SERVED, prompt="hello " * 50, max_tokens=20, extra_body=EXACT)


def fetch_until_complete(source: PrometheusSignals, key: tuple[str, str]) -> ServiceSignals:
    """Fetch until every histogram and rate has moved over two scrapes (what a rate needs);
    after two minutes of traffic, what is still missing fails the test."""
    deadline = time.monotonic() + 120
    while True:
        found = source.fetch().get(key, ServiceSignals())
        missing = [
            name
            for name in ("ttft_buckets", "queue_wait_buckets", "itl_buckets", "e2e_buckets")
            if not getattr(found, name)
        ] + sorted(set(RATES) - {"rejected"} - set(found.rates))
        if not missing:
            return found
        assert time.monotonic() < deadline, f"signals never returned: {missing}"
        time.sleep(1)


async def test_sigterm_drains_streams_then_stops_vllm(engine: VllmWorker) -> None:
    """SIGTERM with 4 streams running and 8 queued (cap 4): /ready turns 503 and new work gets 503
    while the queue drains; every stream ends with all its tokens (so vLLM served until the
    gateway had drained), then the worker exits 0 and vLLM's whole process group is gone."""
    engine.set_tuning(4, 64)
    await until(lambda s: s[0] == 4, engine.base)
    vllm_pid = engine.engine_pid()
    # A new connection per probe: a draining gateway closes idle keep-alive connections, and a
    # POST sent on one it just closed fails with ServerDisconnectedError (seen once under load),
    # which says nothing about whether the gateway takes new work.
    fresh = aiohttp.TCPConnector(force_close=True)
    async with client(engine) as c, aiohttp.ClientSession(connector=fresh) as probe:
        first = FirstTokens(4)
        logs = [Stream(first) for _ in range(12)]
        tasks = [asyncio.create_task(run_stream(c, lg, 400)) for lg in logs]
        await first.reached.wait()
        engine.proc.terminate()
        # Three rounds of 400-token streams are left: the gateway is still draining.
        ready = await status_once(probe, "GET", f"{engine.base}/ready")
        late = await status_once(probe, "POST", f"{engine.base}/v1/completions")
        await asyncio.gather(*tasks)
    assert ready in (503, REFUSED) and late in (503, REFUSED), (ready, late)
    assert [(lg.error, lg.tokens) for lg in logs] == [(None, 400)] * 12, "lost or cut streams"
    assert await asyncio.to_thread(engine.proc.wait, 60) == 0
    await asyncio.to_thread(wait_until_gone, vllm_pid)  # vLLM and its engine core


def wait_until_gone(pgid: int) -> None:
    """Returns once no live process is left in the group (SIGKILLed ones take a moment)."""
    while live_in_group(pgid):
        time.sleep(0.1)


def live_in_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while listed
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


REFUSED = 0  # the connection itself was refused: the gateway stopped listening


async def status_once(session: aiohttp.ClientSession, method: str, url: str) -> int:
    """The status of one request, or REFUSED when the connection is refused. Both mean "no new
    work here" to a kubelet's probe and to a client; which one a draining gateway gives depends
    on whether the probe reaches it before its listener closes."""
    body = {"model": SERVED, "prompt": "too late", "max_tokens": 4}
    try:
        async with session.request(method, url, json=body if method == "POST" else None) as resp:
            return resp.status
    except aiohttp.ClientConnectorError:
        return REFUSED


# Polling helpers: each waits for a state the test caused, bounded by the module's timeout.


async def until(pred: Callable[[Sample], bool], base: str, deadline_s: float = 300) -> Sample:
    """The first gateway sample that satisfies `pred`; a liveness bound, not a speed target:
    past it the test fails with the last sample instead of hanging to the module's timeout."""
    end = time.monotonic() + deadline_s
    while True:
        sample = await gateway_sample(base)
        if pred(sample):
            return sample
        assert time.monotonic() < end, f"gateway never reached the state; last {sample}"
        await asyncio.sleep(0.05)

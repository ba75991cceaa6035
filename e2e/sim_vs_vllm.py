"""The simulator against real vLLM (CPU build, the tiny model): measure the engine's step costs,
give the simulator that profile, replay one bursty trace against both, and print the comparison.

    .venv/bin/python -m e2e.sim_vs_vllm [--json out.json]

vLLM runs with the exact argument list production builds (`launcher.vllm_command` on the config
the operator renders for the tiny model, `cpu-test` engine profile), without the gateway: this
compares the engines' own scheduling. Needs `make setup` (parts vllm and model). Takes about two
minutes after vLLM's start-up; one engine, stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tests.tools import tiny_model, vllm_python
from tests.worker.conftest import free_port, scrape
from tests.worker.vllm_worker import SERVED, rendered_config

from tokenscale.domain.histogram import quantile
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.histogram_buckets import (
    INTER_TOKEN_LATENCY_BUCKETS,
    ITL_FAMILY,
    TIME_TO_FIRST_TOKEN_BUCKETS,
    TTFT_FAMILY,
)
from tokenscale_sim.compare import (
    ReplayResult,
    TraceRequest,
    bursty_trace,
    cumulative,
    fit_step_costs,
    measured_profile,
    percentile,
    simulate,
)
from tokenscale_worker.engine_profile import CPU_TEST
from tokenscale_worker.launcher import engine_env, vllm_command

KV_CAPACITY_TOKENS = 1_048_576  # vLLM's log: "CPU KV cache size: 1,048,576 tokens" (1 GiB)
SAMPLE_S = 0.1


@contextlib.contextmanager
def real_engine(log_path: Path) -> Iterator[tuple[str, WorkerConfig]]:
    config = WorkerConfig.model_validate({**rendered_config(), "port": free_port()})
    env = {
        **os.environ,
        "TOKENSCALE_VLLM_PYTHON": vllm_python(),
        "TOKENSCALE_MODELS_DIR": str(Path(tiny_model()).parent),
    }
    argv = vllm_command(config, CPU_TEST, env)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, env=engine_env(CPU_TEST, env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield f"http://127.0.0.1:{config.port}", config
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def wait_ready(base: str, deadline_s: float = 600) -> float:
    start = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - start < deadline_s:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"{base}/health") as r:
                    if r.status == 200:
                        return time.monotonic() - start
            await asyncio.sleep(0.25)
    raise TimeoutError(f"vLLM at {base} not healthy within {deadline_s} s")


RNG = random.Random(7)


def prompt_ids(n: int) -> list[int]:
    """Random token ids (no special tokens): no two prompts share a prefix, so prefix caching
    never shortens a prefill."""
    return [RNG.randrange(3, 1024) for _ in range(n)]


async def stream(
    s: aiohttp.ClientSession, base: str, prompt: int, tokens: int
) -> tuple[float, list[float]]:
    """(send time, arrival time of each streamed chunk)."""
    body = {
        "model": SERVED, "prompt": prompt_ids(prompt), "max_tokens": tokens, "stream": True,
        "ignore_eos": True, "temperature": 0.0,
    }  # fmt: skip
    sent, chunks = time.monotonic(), []
    async with s.post(f"{base}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.content:
            if line.startswith(b"data: {"):
                chunks.append(time.monotonic())
    return sent, chunks


def gauge(m: dict[str, float], prefix: str) -> int:
    return int(sum(v for key, v in m.items() if key.startswith(prefix)))


def hist_mean(before: dict[str, float], after: dict[str, float], name: str) -> float:
    def total(m: dict[str, float], suffix: str) -> float:
        return sum(v for k, v in m.items() if k.startswith(name + suffix))

    count = total(after, "_count") - total(before, "_count")
    return (total(after, "_sum") - total(before, "_sum")) / count


async def measure_costs(base: str) -> dict[str, Any]:
    """Decode step time by batch size (vLLM's own mean inter-token latency) and lone-prefill
    time by prompt length (vLLM's own TTFT of a request alone), then the fitted line."""
    decode: list[tuple[int, float]] = []
    prefill: list[tuple[int, float]] = []
    async with aiohttp.ClientSession() as s:
        await stream(s, base, 16, 8)  # warm-up
        for n in (1, 2, 4, 8):
            before = await scrape(base)
            await asyncio.gather(*(stream(s, base, 8, 96) for _ in range(n)))
            after = await scrape(base)
            decode.append((n, hist_mean(before, after, "vllm:inter_token_latency_seconds")))
        for p in (16, 128, 256, 384, 500):
            for _ in range(5):
                before = await scrape(base)
                await stream(s, base, p, 1)
                after = await scrape(base)
                prefill.append((p, hist_mean(before, after, "vllm:time_to_first_token_seconds")))
    costs = fit_step_costs(decode, prefill)
    return {"decode": decode, "prefill": prefill, "costs": costs.__dict__}


@dataclass
class VllmReplay(ReplayResult):
    """Also vLLM's own metrics before and after the replay (its histograms' increase)."""

    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """The histogram's cumulative buckets over the replay (one engine, one series)."""
        out = []
        for key, value in self.after.items():
            if key.startswith(name + "_bucket{"):
                le = key.split('le="')[1].split('"')[0]
                out.append((float(le), value - self.before.get(key, 0.0)))
        return sorted(out)


async def replay_vllm(base: str, trace: Sequence[TraceRequest]) -> VllmReplay:
    result = VllmReplay()
    done = asyncio.Event()

    async def sampler(s: aiohttp.ClientSession, t0: float) -> None:
        k = 1
        while not done.is_set():
            await asyncio.sleep(max(0.0, t0 + k * SAMPLE_S - time.monotonic()))
            m = await scrape(base)
            # The time the scrape answered, not the one it was due: a slow client falls behind.
            at = round(round((time.monotonic() - t0) / SAMPLE_S) * SAMPLE_S, 6)
            result.waiting.append((at, gauge(m, "vllm:num_requests_waiting{")))
            result.running.append((at, gauge(m, "vllm:num_requests_running{")))
            k = max(k + 1, round(at / SAMPLE_S) + 1)  # skip the slots already past

    async def one(s: aiohttp.ClientSession, t0: float, r: TraceRequest) -> None:
        await asyncio.sleep(max(0.0, t0 + r.arrival - time.monotonic()))
        sent, chunks = await stream(s, base, r.prompt_tokens, r.output_tokens)
        result.ttft[r.req_id] = chunks[0] - sent
        result.itl.extend(b - a for a, b in itertools.pairwise(chunks))

    result.before = await scrape(base)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        t0 = time.monotonic() + 0.2
        sampling = asyncio.create_task(sampler(s, t0))
        await asyncio.gather(*(one(s, t0, r) for r in trace))
        done.set()
        await sampling
    result.after = await scrape(base)
    key = next(k for k in result.after if k.startswith("vllm:num_preemptions_total"))
    result.preemptions = int(result.after[key] - result.before.get(key, 0.0))
    return result


def hist_quantiles(prefix: str, buckets: Sequence[tuple[float, float]]) -> dict[str, float]:
    out = {}
    for q in (50, 95, 99):
        value = quantile(q / 100, buckets)
        out[f"{prefix}_p{q}"] = math.nan if value is None else value
    return out


def summary(res: ReplayResult, ttft_buckets: Sequence[tuple[float, float]],
            itl_buckets: Sequence[tuple[float, float]]) -> dict[str, float]:  # fmt: skip
    """Engine-side TTFT and ITL read from histograms with vLLM's buckets (what the autoscaler
    sees), the exact per-request TTFT percentiles, queue figures and preemptions."""
    out = hist_quantiles("ttft_hist", ttft_buckets) | hist_quantiles("itl_hist", itl_buckets)
    ttft = list(res.ttft.values())
    out |= {f"ttft_exact_p{q}": percentile(ttft, q) for q in (50, 95, 99)}
    waiting = [w for _, w in res.waiting]
    out["waiting_max"] = max(waiting)
    out["waiting_mean"] = sum(waiting) / len(waiting)
    # Seconds with at least one request waiting: how long the bursts took to clear.
    out["queued_s"] = SAMPLE_S * sum(1 for w in waiting if w > 0)
    out["preemptions"] = res.preemptions
    return out


def real_summary(real: VllmReplay) -> dict[str, float]:
    return summary(
        real,
        real.buckets("vllm:time_to_first_token_seconds"),
        real.buckets("vllm:inter_token_latency_seconds"),
    )


def sim_summary(sim: ReplayResult) -> dict[str, float]:
    # The buckets vLLM exported in this comparison: the rendered config's, else vLLM's defaults.
    custom = rendered_config().get("histogramBuckets") or {}
    return summary(
        sim,
        cumulative(list(sim.ttft.values()), custom.get(TTFT_FAMILY, TIME_TO_FIRST_TOKEN_BUCKETS)),
        cumulative(sim.itl, custom.get(ITL_FAMILY, INTER_TOKEN_LATENCY_BUCKETS)),
    )


def table(real: dict[str, float], sims: dict[str, dict[str, float]]) -> str:
    names = list(sims)
    rows = [
        "| figure | vLLM (CPU) | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for key, value in real.items():
        if math.isnan(value):
            continue  # nothing observed
        seconds = key.startswith(("ttft", "itl"))
        cells = [f"{v * 1000:.1f} ms" if seconds else f"{v:g}" for v in (value,)]
        for name in names:
            other = sims[name][key]
            shown = f"{other * 1000:.1f} ms" if seconds else f"{other:g}"
            ratio = f" ({other / value:.2f}x)" if value and not math.isnan(other) else ""
            cells.append(shown + ratio)
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def timeline(real: ReplayResult, sims: dict[str, ReplayResult], every: int = 2) -> str:
    names = list(sims)
    rows = [
        "| t (s) | waiting vLLM | "
        + " | ".join(f"waiting {n}" for n in names)
        + " | running vLLM | "
        + " | ".join(f"running {n}" for n in names)
        + " |",
        "|---|---|" + "---|" * (2 * len(names) + 1),
    ]
    for (t, w), (_, r) in list(zip(real.waiting, real.running, strict=False))[::every]:
        ws = [str(dict(sims[n].waiting).get(t, 0)) for n in names]
        rs = [str(dict(sims[n].running).get(t, 0)) for n in names]
        rows.append(f"| {t:.1f} | {w} | " + " | ".join(ws) + f" | {r} | " + " | ".join(rs) + " |")
    return "\n".join(rows)


async def run(log_path: Path) -> dict[str, Any]:
    trace = bursty_trace()
    with real_engine(log_path) as (base, config):
        start_s = await wait_ready(base)
        print(f"vLLM ready in {start_s:.1f} s", flush=True)
        measured = await measure_costs(base)
        print(f"step costs: {measured['costs']}", flush=True)
        real = await replay_vllm(base, trace)
    # The limits vLLM ran with: the rendered config as the engine profile changed it.
    engine = config.model_copy(update=dict(CPU_TEST.config_overrides))
    assert engine.max_num_seqs and engine.max_num_batched_tokens and engine.max_model_len
    costs = fit_step_costs(measured["decode"], measured["prefill"])
    profile = measured_profile(
        costs,
        max_num_seqs=engine.max_num_seqs,
        max_num_batched_tokens=engine.max_num_batched_tokens,
        max_model_len=engine.max_model_len,
        kv_capacity_tokens=KV_CAPACITY_TOKENS,
    )
    sims = {
        "sim": simulate(profile, trace, SAMPLE_S),
        "sim+frontend": simulate(profile, trace, SAMPLE_S, costs.frontend_s),
    }
    report = {
        "start_s": start_s, **measured, "real": real_summary(real),
        "sims": {k: sim_summary(v) for k, v in sims.items()},
        "real_waiting": real.waiting, "sim_waiting": {k: v.waiting for k, v in sims.items()},
        "real_ttft": real.ttft, "sim_ttft": {k: v.ttft for k, v in sims.items()},
    }  # fmt: skip
    print(table(report["real"], report["sims"]))
    print(timeline(real, sims))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--log", type=Path, default=Path("/tmp/tokenscale-sim-vs-vllm.log"))
    args = p.parse_args(argv)
    report = asyncio.run(run(args.log))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

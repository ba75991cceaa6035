"""The engine model in virtual time: scheduling rules, preemption, fast path, calibration."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tokenscale_sim.engine import EngineModel, FinishedRequest
from tokenscale_sim.profile import (
    EngineProfile,
    InfeasibleProfileError,
    build_profile,
)

H100_8B = build_profile("llama-3.1-8b", "h100-80gb", max_model_len=8192)


def tiny(**kw: object) -> EngineProfile:
    """A profile with a small KV cache and budget so the rules show in a few requests."""
    base = replace(
        H100_8B,
        kv_capacity_tokens=1024,
        max_num_batched_tokens=512,
        max_num_seqs=8,
        max_model_len=1000,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def run_to_end(engine: EngineModel) -> list[FinishedRequest]:
    done: list[FinishedRequest] = []
    while (res := engine.step(engine.clock)) is not None:
        done.extend(res.finished)
    return done


def test_chunked_prefill_respects_token_budget() -> None:
    engine = EngineModel(tiny())
    engine.add_request("long", 900, 4, 0.0)
    engine.add_request("short", 100, 4, 0.0)
    first = engine.step(0.0)
    assert first is not None
    # 900-token prompt: 512 in step one, 388 in step two, sampled at the end of step two.
    assert first.num_scheduled_tokens == 512
    assert first.tokens == []
    second = engine.step(engine.clock)
    assert second is not None
    assert second.first_tokens == ["long", "short"]  # 388 + 100 = 488 <= 512
    assert second.num_scheduled_tokens == 488


def test_without_chunked_prefill_prompt_waits_for_whole_budget() -> None:
    engine = EngineModel(tiny(enable_chunked_prefill=False, max_num_batched_tokens=1000))
    engine.add_request("a", 600, 3, 0.0)
    engine.add_request("b", 600, 3, 0.0)
    res = engine.step(0.0)
    assert res is not None
    assert res.num_scheduled_tokens == 600  # "b" does not fit the remaining 400 and is not split
    assert engine.num_waiting == 1


def test_max_num_seqs_caps_the_batch() -> None:
    engine = EngineModel(tiny(max_num_seqs=3))
    for i in range(6):
        engine.add_request(i, 10, 5, 0.0)
    res = engine.step(0.0)
    assert res is not None
    assert engine.num_running == 3
    assert engine.num_waiting == 3
    assert len(run_to_end(engine)) == 6


def test_preemption_when_kv_full_recomputes_and_loses_nothing() -> None:
    # 1024 KV tokens; four requests growing to 200 + 200 tokens cannot all stay resident.
    engine = EngineModel(tiny())
    for i in range(4):
        engine.add_request(i, 200, 200, 0.0)
    preempted: list[object] = []
    done: list[FinishedRequest] = []
    while (res := engine.step(engine.clock)) is not None:
        preempted.extend(res.preempted)
        done.extend(res.finished)
        assert engine.free_blocks >= 0
    assert preempted, "the cache overflowed, so something must have been preempted"
    assert engine.num_preemptions == len(preempted)
    assert sorted(f.req_id for f in done) == [0, 1, 2, 3]
    assert all(f.generated_tokens == 200 for f in done)
    assert sum(f.preemptions for f in done) == len(preempted)
    assert engine.free_blocks == engine.total_blocks


def test_max_model_len_ends_generation() -> None:
    engine = EngineModel(tiny())
    engine.add_request("x", 990, 100, 0.0)
    (done,) = run_to_end(engine)
    assert done.generated_tokens == 10
    assert done.finish_reason == "length"


def test_early_stop_reports_stop() -> None:
    engine = EngineModel(tiny())
    engine.add_request("x", 10, 100, 0.0, output_tokens=7)
    (done,) = run_to_end(engine)
    assert (done.generated_tokens, done.finish_reason) == (7, "stop")


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "message"),
    [(0, 5, "at least 1"), (5, 0, "at least 1"), (1000, 5, "max_model_len")],
)
def test_bad_requests_are_refused(prompt: int, max_tokens: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineModel(tiny()).add_request("x", prompt, max_tokens, 0.0)


def test_abort_frees_blocks() -> None:
    engine = EngineModel(tiny())
    engine.add_request("x", 100, 50, 0.0)
    engine.step(0.0)
    assert engine.free_blocks < engine.total_blocks
    assert engine.abort("x")
    assert not engine.has_work
    assert engine.free_blocks == engine.total_blocks
    assert not engine.abort("x")


def _poisson_trace(seed: int, n: int, rate: float) -> list[tuple[int, float, int, int]]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        t += rng.expovariate(rate)
        out.append((i, t, rng.randint(20, 3000), rng.randint(1, 400)))
    return out


def _replay(profile: EngineProfile, fast: bool, seed: int) -> dict[object, FinishedRequest]:
    engine = EngineModel(profile)
    done: list[FinishedRequest] = []
    for req_id, t, prompt, out in _poisson_trace(seed, 400, 6.0):
        if fast:
            done.extend(engine.advance(t).finished)
        else:
            while engine.has_work and engine.clock < t:
                res = engine.step(engine.clock)
                assert res is not None
                done.extend(res.finished)
        engine.add_request(req_id, prompt, out, t)
    done.extend(engine.advance(float("inf")).finished if fast else run_to_end(engine))
    return {f.req_id: f for f in done}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kv_tokens", [450_000, 20_000])
@pytest.mark.parametrize("transfer_s", [0.0, 2e-6])  # a pipeline's stage transfers, per token
def test_advance_fast_path_matches_step_by_step(
    seed: int, kv_tokens: int, transfer_s: float
) -> None:
    profile = replace(
        H100_8B, kv_capacity_tokens=kv_tokens, max_num_seqs=64, transfer_s_per_token=transfer_s
    )
    slow, fast = _replay(profile, False, seed), _replay(profile, True, seed)
    assert slow.keys() == fast.keys()
    for key, a in slow.items():
        b = fast[key]
        assert b.finished_at == pytest.approx(a.finished_at, rel=1e-9)
        assert b.first_token_at == pytest.approx(a.first_token_at, rel=1e-9)
        assert (a.generated_tokens, a.preemptions) == (b.generated_tokens, b.preemptions)


def closed_loop(
    profile: EngineProfile, clients: int, prompt: int, output: int
) -> tuple[float, float]:
    """Mean TTFT and mean time per output token with `clients` users always waiting on a reply,
    the shape of `vllm bench serve --max-concurrency`; the first round is warm-up."""
    engine = EngineModel(profile)
    next_id = 0
    for _ in range(clients):
        engine.add_request(next_id, prompt, output, 0.0)
        next_id += 1
    done: list[FinishedRequest] = []
    while len(done) < 6 * clients:
        for f in engine.advance(engine.clock + 1e-12).finished:
            done.append(f)
            engine.add_request(next_id, prompt, output, engine.clock)
            next_id += 1
    measured = done[clients:]
    ttft = sum(f.ttft for f in measured) / len(measured)
    return ttft, sum(f.mean_itl for f in measured) / len(measured)


# Published figures (docs/simulator.md): Llama-3-8B bf16 on one H100 with vLLM, chat-sized
# requests (256 tokens in, 256 out): ~7.6 ms per output token at 10 concurrent requests,
# ~20 ms at 320 with ~1.7 s TTFT.
@pytest.mark.parametrize(
    ("clients", "itl_s", "ttft_s"),
    [(10, 0.0076, None), (320, 0.020, 1.7)],
)
def test_calibration_llama8b_h100(clients: int, itl_s: float, ttft_s: float | None) -> None:
    ttft, itl = closed_loop(H100_8B, clients, 256, 256)
    assert itl == pytest.approx(itl_s, rel=0.25)
    if ttft_s is not None:
        assert ttft == pytest.approx(ttft_s, rel=0.25)


def test_calibration_a100_single_stream() -> None:
    # Llama-3.1-8B on an A100 40GB at concurrency 1, 1024 in / 128 out: ~75 tokens/s.
    profile = build_profile("llama-3.1-8b", "a100-40gb", max_model_len=8192)
    _, itl = closed_loop(profile, 1, 1024, 128)
    assert 1.0 / itl == pytest.approx(75.0, rel=0.25)


def test_h100_about_twice_as_fast_as_a100_per_token() -> None:
    a100 = build_profile("llama-3.1-8b", "a100-80gb", max_model_len=8192)
    ratios = [
        closed_loop(a100, c, 256, 256)[1] / closed_loop(H100_8B, c, 256, 256)[1]
        for c in (10, 64, 320)
    ]
    assert sum(ratios) / len(ratios) == pytest.approx(2.0, rel=0.25)


@pytest.mark.parametrize("gpu", ["h100-80gb", "a100-80gb", "l4-24gb"])
@pytest.mark.parametrize("model", ["llama-3.1-8b", "llama-3.1-70b"])
@pytest.mark.parametrize("quant", ["none", "awq"])
def test_profiles_build_or_say_why(gpu: str, model: str, quant: str) -> None:
    for tp in (1, 2, 4, 8):
        try:
            profile = build_profile(model, gpu, quant, tensor_parallel_size=tp, max_model_len=8192)
        except InfeasibleProfileError as err:
            assert "use a larger tensor-parallel size" in str(err) or "KV cache" in str(err)
            continue
        assert profile.kv_capacity_tokens >= 8192
        # One decode step of one sequence is between 2 ms and 200 ms on any of these GPUs.
        assert 0.002 < profile.step_seconds(1, 1, 1000, 1000) < 0.2
        return
    pytest.fail(f"{model} {quant} does not fit 8 x {gpu}")


def test_quantized_decode_is_faster() -> None:
    awq = build_profile("llama-3.1-8b", "h100-80gb", "awq", max_model_len=8192)
    assert awq.step_seconds(1, 1, 500, 500) < H100_8B.step_seconds(1, 1, 500, 500) / 1.5


def test_infeasible_names_the_fix() -> None:
    with pytest.raises(InfeasibleProfileError, match="tensor-parallel size or a 4-bit format"):
        build_profile("llama-3.1-70b", "l4-24gb")


def test_step_noise_multiplies_each_step_time_in_turn_on_both_paths() -> None:
    """Noise [2, 0.5] cycled: the steps alternate twice and half the roofline's time; the decode
    fast path and step-by-step driving apply the same multipliers in the same order, and a noise
    of 1 is no noise."""

    def finish(noise: list[float] | None, fast: bool) -> float:
        engine = EngineModel(tiny(), step_noise=noise)
        engine.add_request("a", 16, 40, 0.0)
        engine.add_request("b", 16, 40, 0.0)
        if fast:
            done = engine.advance(1e9).finished
        else:
            done = run_to_end(engine)
        return max(f.finished_at for f in done)

    plain = finish(None, fast=False)
    noisy = finish([2.0, 0.5], fast=False)
    assert noisy == pytest.approx(finish([2.0, 0.5], fast=True), rel=1e-12)
    assert plain == pytest.approx(finish(None, fast=True), rel=1e-12)
    assert noisy != pytest.approx(plain, rel=1e-3)
    assert finish([1.0], fast=True) == pytest.approx(plain, rel=1e-12)

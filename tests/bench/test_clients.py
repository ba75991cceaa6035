"""What the world adds to a trace (bench.clients): prefix caching, client timeouts,
cancellations, and 429s at the gateway's queue bound, each against the engine model it changes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tokenscale.bench.bound import lower_bound, warm_lead
from tokenscale.bench.clients import ClientModel, PrefixCache, seen_before_hits
from tokenscale.bench.feasible import idle_ttft
from tokenscale.bench.fleet import Fleet
from tokenscale.bench.metrics import Recorder
from tokenscale.bench.policies import Static, Tokenscale
from tokenscale.bench.runner import simulate
from tokenscale.bench.scenario import Scenario
from tokenscale.bench.trace_rows import HASH_BLOCK_TOKENS
from tokenscale.bench.traces import Trace, TraceError, block_array, load
from tokenscale_contract.retry_after import retry_after_s
from tokenscale_sim.engine import EngineModel

# vLLM's 8192-token budget: the prompts below fit one chunk, the mechanics under test.
SC = Scenario(max_num_batched_tokens=8192)


def trace_of(
    arrival: list[float],
    prompt: list[int],
    output: list[int],
    blocks: list[tuple[int, ...]] | None = None,
) -> Trace:
    return Trace(
        "t",
        np.asarray(arrival, dtype=np.float64),
        np.asarray(prompt, dtype=np.int64),
        np.asarray(output, dtype=np.int64),
        None if blocks is None else block_array(blocks),
    )


def first_token(engine: EngineModel) -> float:
    while True:
        res = engine.step(engine.clock)
        assert res is not None
        if res.first_tokens:
            return res.end


# -- prefix caching in the engine ----------------------------------------------------------------


def test_a_cached_prefix_skips_its_prefill() -> None:
    p = SC.profile
    cold, warm = EngineModel(p), EngineModel(p)
    cold.add_request(1, 8192, 4, 0.0)
    warm.add_request(1, 8192, 4, 0.0, cached_tokens=6144)
    cold_s, warm_s = first_token(cold), first_token(warm)
    assert cold_s == pytest.approx(idle_ttft(p, 8192))
    # the 2048 tokens left attend to the cached 6144: one chunk, cheaper than the whole prompt
    assert warm_s == pytest.approx(p.step_seconds(2048, 1, 8192, 2048 * (6144 + 2049 / 2)))
    assert warm_s < cold_s / 2


def test_only_whole_blocks_hit_and_the_last_prompt_token_is_always_computed() -> None:
    p = SC.profile
    whole = EngineModel(p)
    whole.add_request(1, 4096, 4, 0.0, cached_tokens=4096)  # everything "cached"
    step = whole.step(0.0)
    assert step is not None
    # vLLM recomputes the prompt's last block so that it has logits to sample from
    assert step.num_scheduled_tokens == 4096 - (4095 // p.block_size * p.block_size)
    ragged = EngineModel(p)
    ragged.add_request(1, 4096, 4, 0.0, cached_tokens=p.block_size + 3)
    step = ragged.step(0.0)
    assert step is not None
    assert step.num_scheduled_tokens == 4096 - p.block_size
    with pytest.raises(ValueError, match="cached_tokens"):
        EngineModel(p).add_request(1, 10, 4, 0.0, cached_tokens=-1)


def test_a_preempted_request_hits_its_cached_prefix_again() -> None:
    # room for 4096 tokens: two long answers outgrow it and the newest (2) is preempted
    p = replace(SC.profile, kv_capacity_tokens=4096)
    engine = EngineModel(p)
    engine.add_request(1, 1024, 3000, 0.0)
    engine.add_request(2, 1024, 3000, 0.0, cached_tokens=512)
    preempted: list[object] = []
    while not preempted:
        res = engine.step(engine.clock)
        assert res is not None
        preempted += res.preempted
    assert preempted == [2]
    context = engine._by_id[2].num_tokens  # prompt + tokens generated so far
    engine.abort(1)
    res = engine.step(engine.clock)
    # its blocks went back to the pool but stay cached: only what follows the prefix is redone
    assert res is not None and res.num_scheduled_tokens == context - 512


# -- the prefix cache of a replica ---------------------------------------------------------------


def test_the_prefix_cache_hits_leading_blocks_and_evicts_the_least_recent() -> None:
    cache = PrefixCache(3 * HASH_BLOCK_TOKENS)
    assert cache.lookup_and_insert((1, 2)) == 0
    assert cache.lookup_and_insert((1, 2, 3)) == 2 * HASH_BLOCK_TOKENS
    assert cache.lookup_and_insert((9, 1)) == 0  # only a leading run hits
    # capacity 3: inserting 9 evicted the least recently used (2), so 1-2 breaks after 1
    assert cache.lookup_and_insert((1, 2)) == HASH_BLOCK_TOKENS


def test_seen_before_hits_is_what_one_shared_unbounded_cache_hits() -> None:
    t = trace_of([0, 1, 2, 3], [1024, 1536, 1024, 600], [4] * 4, [(1, 2), (1, 2, 3), (4,), (1, 5)])
    assert seen_before_hits(t).tolist() == [0, 1024, 0, 512]
    assert seen_before_hits(trace_of([0], [10], [4])).tolist() == [0]


def test_mooncake_hash_ids_are_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    rows = [
        {"timestamp": 1000, "input_length": 1000, "output_length": 5, "hash_ids": [7, 8]},
        {"timestamp": 0, "input_length": 300, "output_length": 5, "hash_ids": [7]},
    ]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = load(good)
    assert t.hash_ids is not None and [tuple(x) for x in t.hash_ids] == [(7,), (7, 8)]
    scaled = t.scaled(2.0, seed=1)
    assert scaled.hash_ids is not None and len(scaled.hash_ids) == 4
    assert load_rows(tmp_path, [{"timestamp": 0, "input_length": 5, "output_length": 5}]) is None
    for bad, message in [
        ({"hash_ids": "7"}, "hash_ids must be a JSON list"),
        ({"hash_ids": [1, 2, 3]}, "hash_ids has 3 ids but input_length 1000 makes 2 blocks"),
        ({"hash_ids": [1, True]}, "hash_ids must hold integers"),
        ({"hash_ids": [-1]}, "hash_ids must hold integers"),
    ]:
        row = {"timestamp": 0, "input_length": 1000, "output_length": 5, **bad}
        with pytest.raises(TraceError, match=message):
            load_rows(tmp_path, [row])


def load_rows(tmp_path: Path, rows: list[dict[str, object]]) -> object:
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load(f).hash_ids


def shared_prefix_trace(blocks: bool, n: int = 240, seed: int = 3) -> Trace:
    """Requests over four 6k-token documents, each with its own 1k-token question: RAG."""
    rng = np.random.default_rng(seed)
    doc = rng.integers(0, 4, n)
    ids = [(*(int(d) * 100 + k for k in range(12)), 10_000 + i, 20_000 + i) for i, d in
           enumerate(doc)]  # fmt: skip
    return trace_of(
        sorted(rng.uniform(0, 120, n).tolist()),
        [7168] * n,
        [32] * n,
        ids if blocks else None,
    )


def test_requests_sharing_a_prefix_are_served_faster_with_block_ids() -> None:
    plain = simulate(shared_prefix_trace(False), SC, Static(2), 2)
    cached = simulate(shared_prefix_trace(True), SC, Static(2), 2)
    assert cached.ttft_p50_s < plain.ttft_p50_s / 2
    hit = simulate(shared_prefix_trace(False), replace(SC, prefix_hit_rate=0.8), Static(2), 2)
    assert hit.ttft_p50_s < plain.ttft_p50_s / 2


def test_no_policy_comes_in_under_the_bound_with_prefix_caching_and_drawn_clients() -> None:
    sc = replace(SC, world="drawn", seed=4)
    trace = shared_prefix_trace(True, n=900)
    bound = lower_bound(sc, trace)
    initial = bound.warm_start(warm_lead(sc))
    for policy in (Tokenscale(sc), Static(1), Static(3)):
        r = simulate(trace, sc, policy, initial)
        assert r.gpu_hours >= bound.gpu_hours(r.slo_attainment) * (1 - 1e-12), r.row()


# -- clients -------------------------------------------------------------------------------------


def one_replica(trace: Trace, clients: ClientModel, cap: int = 1) -> tuple[Fleet, Recorder]:
    rec = Recorder(trace, SC.tick_s)
    fleet = Fleet(SC.profile, trace, rec, 0.0, 2, seed=1, clients=clients)
    fleet.set_cap(cap)
    fleet.start(1, 0.0, warm=True)
    for rid, t in enumerate(trace.arrival.tolist()):
        fleet.due(t)
        fleet.arrive(rid, t)
    for t in range(0, 4000, 5):
        fleet.advance_all(float(t))
    return fleet, rec


def test_a_client_that_times_out_leaves_the_queue_and_frees_its_turn() -> None:
    # cap 1, three long requests at once: the third waits for two whole answers (~2 x 1000 x
    # 20 ms = 40 s) unless the second's client gives up at 10 s and the third moves up.
    trace = trace_of([0.0, 0.0, 0.0, 0.0], [512] * 4, [1000, 1000, 1000, 4])
    _, patient = one_replica(trace, ClientModel())
    fleet, rec = one_replica(trace, ClientModel(timeout_s=10.0))
    assert not patient.timed_out.any()
    assert rec.timed_out.tolist() == [False, True, True, True]
    assert np.isnan(rec.ttft[1:]).all() and fleet.timed_out == 3
    # the engine aborted nothing it had started, the gateway dropped the queued ones
    assert rec.ttft[0] == pytest.approx(patient.ttft[0])


def test_a_timeout_aborts_a_request_the_engine_is_prefilling() -> None:
    # a 12k-token prompt behind a 12k one: the engine holds both; the second's client leaves
    trace = trace_of([0.0, 0.0], [12_000, 12_000], [4, 4])
    _, rec = one_replica(trace, ClientModel(timeout_s=0.9), cap=2)
    assert not rec.timed_out[0] or np.isnan(rec.ttft[0])
    assert rec.timed_out[1] and np.isnan(rec.ttft[1])


def test_a_full_queue_answers_429_and_the_client_retries_after_retry_after() -> None:
    # cap 1, queue 1 per slot: of five simultaneous requests, one runs, one waits, three get 429
    trace = trace_of([0.0] * 5, [256] * 5, [200] * 5)
    fleet, rec = one_replica(trace, ClientModel(queue_per_slot=1, retries=0))
    assert fleet.refusals == 3 and rec.rejected.tolist() == [False, False, True, True, True]
    fleet, rec = one_replica(trace, ClientModel(queue_per_slot=1))
    # retried (twice at most) after Retry-After: most are served in the end, late
    served_late = ~rec.rejected[2:]
    assert fleet.refusals > 3 and 0 < rec.rejected.sum() < 3
    assert (rec.ttft[2:][served_late] >= fleet.service_s).all()
    assert not np.isnan(rec.ttft[:2]).any()
    # the bound is what the operator renders: 4 per slot holds all five
    fleet, rec = one_replica(trace, ClientModel(queue_per_slot=4))
    assert fleet.refusals == 0


def test_retry_after_is_the_time_the_queue_ahead_takes_within_1_to_60_s() -> None:
    assert retry_after_s(256, 32, 4.0) == 32.0
    assert retry_after_s(1, 32, 0.1) == 1.0
    assert retry_after_s(10_000, 1, 5.0) == 60.0


def test_cancellations_cut_a_share_of_answers_the_same_way_for_a_seed() -> None:
    trace = trace_of(list(range(2000)), [100] * 2000, [400] * 2000)
    model = ClientModel(cancel_share=0.1)
    out = model.outputs(trace, 5)
    cut = out < 400
    assert 0.07 < cut.mean() < 0.13 and (out >= 1).all()
    assert (model.outputs(trace, 5) == out).all()
    assert (ClientModel().outputs(trace, 5) == 400).all()


def test_the_drawn_world_has_realistic_clients_and_the_known_world_ideal_ones() -> None:
    drawn = replace(SC, world="drawn").clients
    assert drawn.timeout_s == 60.0 and drawn.cancel_share > 0 and drawn.queue_per_slot == 4
    assert SC.clients == ClientModel()
    with pytest.raises(ValueError, match="cancel share"):
        ClientModel(cancel_share=2.0)
    with pytest.raises(ValueError, match="timeout"):
        ClientModel(timeout_s=0.0)

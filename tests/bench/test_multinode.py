"""The multi-node scenario (issue 16, item 6): Llama-3.1-405B bf16 on groups of 2 nodes x 8 H100,
its GPU-hours counted per group (16 GPUs), a group's cold start its slowest node plus the
rendezvous, and the pipeline's cross-node transfer in every step."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tokenscale.bench.bound import lower_bound, warm_lead
from tokenscale.bench.cli import main
from tokenscale.bench.fleet import Fleet
from tokenscale.bench.metrics import Recorder
from tokenscale.bench.policies import Static, Tokenscale
from tokenscale.bench.runner import RunResult, simulate
from tokenscale.bench.scenario import SCENARIOS, Scenario, group_cold_start
from tokenscale.bench.workload import default_workload
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.perf import step_model
from tokenscale_contract import catalog
from tokenscale_sim.profile import build_profile

MN = SCENARIOS["multinode-405b"]
# Seven minutes of the embedded day at a quarter of its rate: 2-3.5 req/s, one group's worth.
TRACE = default_workload(1).scaled(0.25, duration=420, max_tokens=MN.max_model_len)


def test_a_replica_is_a_group_of_two_nodes_of_eight_h100() -> None:
    p = MN.plan
    assert (MN.model, MN.quantization, MN.gpu) == ("llama-3.1-405b", "none", "h100-80gb")
    assert (p.nodes, p.tensor_parallel, p.pipeline_parallel) == (2, 8, 2)
    assert p.gpus_per_replica == 16
    # The same plan `tokenscale plan` prints: the bench asks the planner, it does not invent one.
    same = plan(MN.spec(), multi_node=True)
    assert isinstance(same, Plan) and same.gpus_per_replica == 16
    assert MN.describe()["gpus_per_replica"] == 16 and MN.describe()["nodes_per_replica"] == 2
    # Without multi-node planning 405B bf16 fits no H100 node: the standard bench refuses it.
    with pytest.raises(ValueError, match="does not fit"):
        _ = replace(MN, multi_node=False).plan


def test_the_engine_is_the_planners_pipeline_with_its_cross_node_transfer() -> None:
    """A round of B running sequences takes the traversal of one micro-batch of B / 2 (the
    planner's `ServiceModel.decode_s`), and that traversal pays the stage boundary: more than
    the same micro-batch on one node of 8 GPUs would take."""
    prof = MN.profile
    assert "xpp2" in prof.name and prof.transfer_s_per_token > 0
    arch, gpu, quant = (
        catalog.model(MN.model),
        catalog.gpu(MN.gpu),
        catalog.quant(MN.quantization),
    )
    planner = step_model(arch, gpu, quant, 8, 2)
    one_node = step_model(arch, gpu, quant, 8, 1)
    for batch, context in ((2, 1000.0), (64, 1300.0), (256, 2000.0)):
        kv = batch * context
        round_s = prof.step_seconds(batch, batch, kv, kv)
        assert round_s == pytest.approx(planner.decode_itl(batch // 2, context), rel=1e-9)
        assert round_s > one_node.decode_itl(batch // 2, context)
    # Every micro-batch has its own token budget.
    assert prof.max_num_batched_tokens == 2 * MN.plan.max_num_batched_tokens
    # A single-node scenario's engine is the plain profile, as before.
    sc = Scenario()
    assert sc.profile == build_profile(
        sc.model,
        sc.gpu,
        sc.quantization,
        tensor_parallel_size=sc.plan.tensor_parallel,
        max_num_seqs=sc.plan.max_num_seqs,
        max_num_batched_tokens=sc.plan.max_num_batched_tokens,
        max_model_len=sc.max_model_len,
    )


def test_a_groups_cold_start_is_its_slowest_node_plus_the_rendezvous() -> None:
    assert group_cold_start([558.0, 640.0], 30.0) == 670.0
    assert group_cold_start([120.0], 0.0) == 120.0
    # One node reads its half of the 756 GiB checkpoint from the model cache at 1 GiB/s and
    # warms up for 180 s; the group serves after the rendezvous.
    shard_s = MN.plan.weights_gib / 2 + 180.0
    assert MN.cold_start_s == pytest.approx(shard_s, abs=0.5)
    assert MN.replica_cold_start_s == pytest.approx(shard_s + MN.rendezvous_s)
    assert MN.replica_cold_start_s >= shard_s  # never sooner than one node alone
    assert MN.spec().scaling.cold_start_seconds == MN.replica_cold_start_s  # what decide() plans
    assert warm_lead(MN) == 60.0 + MN.tick_s + MN.replica_cold_start_s
    # Single-node replicas wait for no rendezvous.
    assert Scenario().replica_cold_start_s == Scenario().cold_start_s == 120.0


def test_drawn_groups_wait_for_their_slowest_node() -> None:
    """Drawn per node (lognormal, sigma 0.35), a group waits for the later of two draws: its
    median is the draws' 70.7th percentile (x1.21), never below one node's, plus 30 s."""
    sc = replace(MN, world="drawn")
    rec = Recorder(TRACE, sc.tick_s)
    node_s, rdv = sc.cold_start_s, sc.group_rendezvous_s
    assert rdv == 30.0

    def waits(nodes: int, rendezvous: float) -> np.ndarray:
        fleet = Fleet(
            sc.profile,
            TRACE,
            rec,
            node_s,
            16,
            5,
            sc.cold_start_sigma,
            nodes=nodes,
            rendezvous_s=rendezvous,
        )
        fleet.start(2000, 0.0)
        return np.array([r.ready_at for r in fleet.alive])

    group, single = waits(2, rdv), waits(1, 0.0)
    assert np.median(single) == pytest.approx(node_s, rel=0.05)
    assert np.median(group) == pytest.approx(node_s * np.exp(0.35 * 0.5449) + rdv, rel=0.05)
    assert np.median(group) > np.median(single) + rdv
    assert group.min() >= rdv
    # The known world: every group at exactly the node's cold start plus the rendezvous.
    known = Fleet(MN.profile, TRACE, rec, node_s, 16, 5, nodes=2, rendezvous_s=rdv)
    known.start(3, 10.0)
    assert {r.ready_at for r in known.alive} == {10.0 + node_s + rdv}


def _timeline_replica_seconds(r: RunResult, end: float) -> float:
    """Replica-seconds from the run's own tick series: the count asked at each tick, held to
    the next (pods start at the tick; a removed pod's drain is the only difference)."""
    edges = [*r.times, end]
    return sum(n * (b - a) for n, a, b in zip(r.replicas, edges, edges[1:], strict=False))


def test_gpu_hours_count_every_gpu_of_a_group() -> None:
    end = max(TRACE.duration, MN.tick_s)
    static = simulate(TRACE, MN, Static(2), 2)
    # Two groups for the whole replay: 2 x 420 s x 16 GPUs, not x 8 (one node's tensor parallel).
    assert static.gpu_hours == pytest.approx(2 * end * 16 / 3600, rel=1e-9)
    assert static.gpu_hours != pytest.approx(2 * end * MN.plan.tensor_parallel / 3600)

    # Scaling up from one group at twice the rate: groups still starting (not ready for 588 s)
    # already hold their 16 GPUs.
    busy = default_workload(1).scaled(0.5, duration=420, max_tokens=MN.max_model_len)
    up = simulate(busy, MN, Tokenscale(MN), 1)
    assert max(up.replicas) > 1 and max(up.ready) == 1
    busy_end = max(busy.duration, MN.tick_s)
    assert up.replica_seconds == pytest.approx(_timeline_replica_seconds(up, busy_end), rel=1e-9)
    assert up.gpu_hours == pytest.approx(up.replica_seconds * 16 / 3600, rel=1e-9)

    # Scaling down from four: a removed group counts until its last request is done (an answer
    # of at most 1000 tokens at ~0.1 s each), no longer.
    down = simulate(TRACE, MN, Tokenscale(MN), 4)
    removed = sum(max(0, a - b) for a, b in zip(down.replicas, down.replicas[1:], strict=False))
    assert removed > 0
    timeline = _timeline_replica_seconds(down, end)
    assert timeline <= down.replica_seconds <= timeline + removed * 120.0
    assert down.gpu_hours == pytest.approx(down.replica_seconds * 16 / 3600, rel=1e-9)


def test_a_short_multinode_run_completes_and_reports_attainment(tmp_path: Path) -> None:
    out = tmp_path / "mn.json"
    rc = main(
        [
            "--scenario",
            "multinode-405b",
            "--rate-scale",
            "0.25",
            "--duration",
            "300",
            "--policies",
            "tokenscale,static",
            "--no-progress",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    meta = doc["scenario"]
    assert (meta["model"], meta["quantization"]) == ("llama-3.1-405b", "none")
    assert (meta["gpus_per_replica"], meta["nodes_per_replica"], meta["tensor_parallel"]) == (
        16,
        2,
        8,
    )
    assert meta["replica_cold_start_s"] == MN.replica_cold_start_s
    rows = {(r["policy"], r["config"]): r for r in doc["results"]}
    ts = rows[("tokenscale", "defaults")]
    assert 0.9 <= ts["slo_attainment"] <= 1.0 and ts["rejected"] == 0
    assert all(r["gpu_hours"] > 0 for r in doc["results"])


def test_options_override_the_named_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from tokenscale.bench.cli import add_arguments, scenario_from
    from tokenscale.cli.usage import OneLineParser

    parser = OneLineParser(prog="tokenscale bench")
    add_arguments(parser)
    sc = scenario_from(parser.parse_args(["--scenario", "multinode-405b", "--cold-start", "300"]))
    assert sc.multi_node and sc.cold_start_s == 300.0 and sc.replica_cold_start_s == 330.0
    assert sc.ttft_s == MN.ttft_s
    assert scenario_from(parser.parse_args([])) == SCENARIOS["standard"] == Scenario()
    assert main(["--scenario", "multinode-405b", "--check-targets", "--no-progress"]) == 2
    assert "--check-targets checks the standard scenario" in capsys.readouterr().err


def test_the_lower_bound_counts_groups_too() -> None:
    bound = lower_bound(MN, TRACE)
    assert bound.gpus_per_replica == 16
    seconds = bound.replica_seconds(0.99)
    assert bound.gpu_hours(0.99) == pytest.approx(seconds * 16 / 3600, rel=1e-12)
    # At least one group for the whole replay, never fewer.
    assert seconds >= max(TRACE.duration, 60.0) - 1e-6

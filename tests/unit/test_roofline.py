"""One roofline: what the planner and the autoscaler believe is what the simulator runs."""

from __future__ import annotations

import itertools

import pytest

from tokenscale.domain.perf import step_model
from tokenscale_contract import catalog
from tokenscale_contract.roofline import ALLREDUCE_S_NVLINK, ALLREDUCE_S_PCIE, roofline
from tokenscale_sim.profile import InfeasibleProfileError, build_profile


@pytest.mark.parametrize(
    ("model", "gpu", "quant"),
    list(
        itertools.product(
            ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b"],
            ["h100-80gb", "a100-80gb", "l4-24gb", "l40s-48gb"],
            ["none", "fp8", "awq"],
        )
    ),
)
def test_planner_and_simulator_time_a_step_alike(model: str, gpu: str, quant: str) -> None:
    arch, g, q = catalog.model(model), catalog.gpu(gpu), catalog.quant(quant)
    for tp in (1, 2, 4, 8):
        try:
            sim = build_profile(model, gpu, quant, tensor_parallel_size=tp, max_model_len=4096)
        except InfeasibleProfileError:
            continue
        planner = step_model(arch, g, q, tp)
        for batch, context in ((1, 500.0), (36, 1255.0), (200, 3000.0)):
            kv = batch * context
            assert planner.decode_itl(batch, context) == sim.step_seconds(batch, batch, kv, kv)
        prompt = 1155
        prefill = sim.step_seconds(prompt, 1, prompt, prompt * (prompt + 1) / 2)
        assert planner.prefill_s(prompt) == pytest.approx(prefill - sim.fixed_s, rel=1e-12)
        return
    pytest.fail(f"{model} {quant} fits no tensor-parallel size on {gpu}: pick another case")


def test_pcie_parts_pay_more_for_each_all_reduce() -> None:
    """Two all-reduces per layer: 80 layers x 2 x 25 us = 4 ms a step on L4s without NVLink, a
    quarter of that over NVLink."""
    arch, q = catalog.model("llama-3.1-70b"), catalog.quant("awq")
    l4 = roofline(arch, catalog.gpu("l4-24gb"), q, 4)
    h100 = roofline(arch, catalog.gpu("h100-80gb"), q, 4)
    assert l4.fixed_s - h100.fixed_s == pytest.approx(160 * (ALLREDUCE_S_PCIE - ALLREDUCE_S_NVLINK))
    assert roofline(arch, catalog.gpu("l4-24gb"), q, 1).fixed_s < l4.fixed_s


def test_a_second_node_adds_its_stage_boundary_and_nothing_else() -> None:
    m, g, q = catalog.model("llama-3.1-405b"), catalog.gpu("h100-80gb"), catalog.quant("none")
    one, two = roofline(m, g, q, 8), roofline(m, g, q, 8, nodes=2)
    # 16384 hidden x 2 B over the node's 8 x 400 Gb/s = 400 GB/s: 82 ns per token
    assert two.transfer_s_per_token == pytest.approx(16384 * 2 / 400e9)
    assert two.fixed_s - one.fixed_s == pytest.approx(2 * 10e-6)  # there and back
    assert (two.weight_s, two.flop_s_per_token) == (one.weight_s, one.flop_s_per_token)
    batch = 128
    extra = two.decode_step(batch, 2000) - one.decode_step(batch, 2000)
    assert extra == pytest.approx(2 * 10e-6 + batch * 16384 * 2 / 400e9)
    assert one.transfer_s_per_token == 0.0


def test_planner_and_simulator_time_a_two_node_step_alike() -> None:
    m, g, q = catalog.model("llama-3.1-405b"), catalog.gpu("h100-80gb"), catalog.quant("none")
    sim = build_profile("llama-3.1-405b", "h100-80gb", "none", tensor_parallel_size=8, nodes=2,
                        max_model_len=16384)  # fmt: skip
    planner = step_model(m, g, q, 8, nodes=2)
    for batch, context in ((1, 500.0), (64, 2000.0)):
        kv = batch * context
        assert planner.decode_itl(batch, context) == sim.step_seconds(batch, batch, kv, kv)
    assert sim.transfer_s_per_token > 0 and sim.kv_capacity_tokens > 500_000
    with pytest.raises(InfeasibleProfileError):
        build_profile("llama-3.1-405b", "h100-80gb", "none", tensor_parallel_size=8)

"""The chart's gpuNodes values reach the operator as the variables its placement reads."""

from __future__ import annotations

import pytest

from tests.unit.test_chart import CHART, helm, operator_env
from tokenscale.domain import placement


def test_default_chart_selects_by_gfd_product_and_tolerates_the_gpu_taint() -> None:
    chosen = placement.from_env(operator_env())
    assert chosen == placement.DEFAULT_PLACEMENT
    assert chosen.label == "nvidia.com/gpu.product"
    assert chosen.tolerate_gpu_taint


def test_gke_labels_from_values_reach_the_operator() -> None:
    env = operator_env(
        "gpuNodes.label=cloud.google.com/gke-accelerator",
        "gpuNodes.values.l4-24gb[0]=nvidia-l4",
        "gpuNodes.tolerateGpuTaint=false",
    )
    chosen = placement.from_env(env)
    assert chosen.requirement("l4-24gb") == {
        "key": "cloud.google.com/gke-accelerator",
        "operator": "In",
        "values": ["nvidia-l4"],
    }
    assert not chosen.tolerate_gpu_taint


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gpuNodes.values.b200[0]=x", "gpuNodes/values"),
        ("gpuNodes.tolerateGpuTaint=maybe", "gpuNodes/tolerateGpuTaint"),
        ("gpuNodes.label=has space", "gpuNodes/label"),
    ],
)
def test_bad_gpu_node_values_fail_naming_the_key(setting: str, message: str) -> None:
    proc = helm("template", "t", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr

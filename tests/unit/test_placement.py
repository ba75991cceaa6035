"""GPU discovery: pods select nodes by GPU Feature Discovery's labels (or a cloud's own, from the
chart), and the autoscaler reads each node's GPU kind and GPU count from the node itself."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import autoscale, capacity, placement, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.placement import GpuPlacement
from tokenscale_contract import catalog

REF = ServiceRef("chat", "team-a", uid="1")
GFD = "nvidia.com/gpu.product"


def pod_spec(gpu: str = "l4-24gb", where: GpuPlacement | None = None, **resources: Any) -> Any:
    doc = minimal_spec(
        model={"source": "hf://m/8b", "architecture": "llama-3.1-8b"},
        resources={"gpu": gpu, **resources},
    )
    spec = InferenceServiceSpec.model_validate(doc)
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    dep = render.make_deployment(
        REF, spec, plan, False, placement=where or placement.DEFAULT_PLACEMENT
    )
    return dep["spec"]["template"]["spec"]


def gpu_terms(pod: Any) -> list[Any]:
    required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    terms: list[Any] = required["nodeSelectorTerms"]
    return terms


def gfd_node(name: str, product: str, gpus: int | None, count_label: str | None = None) -> Any:
    labels = {"nvidia.com/gpu.product": product}
    if count_label is not None:
        labels["nvidia.com/gpu.count"] = count_label
    status = {} if gpus is None else {"allocatable": {"nvidia.com/gpu": str(gpus)}}
    return {"metadata": {"name": name, "labels": labels}, "spec": {}, "status": status}


@pytest.mark.parametrize(
    ("kind", "product"),
    [
        ("h100-80gb", "NVIDIA-H100-80GB-HBM3"),
        ("h200-141gb", "NVIDIA-H200"),
        ("a100-80gb", "NVIDIA-A100-SXM4-80GB"),
        ("a100-40gb", "NVIDIA-A100-SXM4-40GB"),
        ("l40s-48gb", "NVIDIA-L40S"),
        ("l4-24gb", "NVIDIA-L4"),
    ],
)
def test_pods_require_the_gfd_product_of_their_gpu_kind(kind: str, product: str) -> None:
    pod = pod_spec(kind, gpusPerReplica=8 if kind == "l4-24gb" else "auto")
    assert gpu_terms(pod) == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": [product]}
            ]
        }
    ]
    assert "tokenscale.io/gpu" not in (pod.get("nodeSelector") or {})


def test_every_catalog_kind_has_gfd_products_and_pcie_parts_are_not_sxm() -> None:
    assert set(catalog.GFD_PRODUCTS) == set(catalog.GPUS)
    default = placement.DEFAULT_PLACEMENT
    assert default.kind_of({"nvidia.com/gpu.product": "NVIDIA-H100-PCIe"}) is None
    assert default.kind_of({"nvidia.com/gpu.product": "NVIDIA-A100-80GB-PCIe"}) is None
    assert default.kind_of({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}) == "a100-80gb"


def test_user_affinity_terms_each_also_demand_the_gpu() -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    rack = {"key": "rack", "operator": "Exists"}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [zone]}, {"matchExpressions": [rack]}]
            }
        }
    }
    terms = gpu_terms(pod_spec(affinity=affinity, nodeSelector={"pool": "x"}))
    gpu = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}
    assert terms == [{"matchExpressions": [zone, gpu]}, {"matchExpressions": [rack, gpu]}]
    assert pod_spec(nodeSelector={"pool": "x"})["nodeSelector"] == {"pool": "x"}


def test_default_toleration_for_the_gpu_taint_is_optional_and_not_doubled() -> None:
    taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert pod_spec()["tolerations"] == [taint]
    assert pod_spec(tolerations=[taint])["tolerations"] == [taint]
    off = GpuPlacement(tolerate_gpu_taint=False)
    assert "tolerations" not in pod_spec(where=off)


def test_a_cloud_label_overrides_key_and_values_from_the_environment() -> None:
    gke = placement.from_env(
        {
            "TOKENSCALE_GPU_NODE_LABEL": "cloud.google.com/gke-accelerator",
            "TOKENSCALE_GPU_NODE_VALUES": '{"l4-24gb": ["nvidia-l4"]}',
            "TOKENSCALE_GPU_TOLERATION": "off",
        }
    )
    assert gpu_terms(pod_spec(where=gke))[0]["matchExpressions"] == [
        {"key": "cloud.google.com/gke-accelerator", "operator": "In", "values": ["nvidia-l4"]}
    ]
    assert gke.kind_of({"cloud.google.com/gke-accelerator": "nvidia-l4"}) == "l4-24gb"
    # A kind without values under a custom label is matched by its own id.
    assert gke.accepted("h100-80gb") == ("h100-80gb",)
    assert placement.from_env({}) == placement.DEFAULT_PLACEMENT


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TOKENSCALE_GPU_NODE_VALUES": "{nope"}, "TOKENSCALE_GPU_NODE_VALUES is not JSON"),
        ({"TOKENSCALE_GPU_NODE_VALUES": '{"b200": ["x"]}'}, "unknown GPU kind 'b200'"),
        ({"TOKENSCALE_GPU_NODE_VALUES": '{"l4-24gb": []}'}, "non-empty list of strings"),
        ({"TOKENSCALE_GPU_TOLERATION": "maybe"}, "must be on or off"),
    ],
)
def test_malformed_placement_settings_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        placement.from_env(env)


def test_autoscaler_reads_gpu_kind_and_count_from_gfd_labels() -> None:
    nodes = [
        gfd_node("l4-a", "NVIDIA-L4", 4),  # the e2e L4 nodes: 4 GPUs, not the catalog's 8
        gfd_node("l4-b", "NVIDIA-L4", None, count_label="4"),  # device plugin not reported yet
        gfd_node("pcie", "NVIDIA-H100-PCIe", 8),
    ]
    found = autoscale.gpu_nodes(nodes, [])
    assert [(n.kind, n.allocatable) for n in found] == [("l4-24gb", 4), ("l4-24gb", 4)]

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, names, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig
from tokenscale_worker.launcher import build_vllm_args

REF = ServiceRef("chat", "team-a", uid="1234", generation=3)


def planned(**sections: Any) -> tuple[InferenceServiceSpec, Plan]:
    spec = InferenceServiceSpec.model_validate(minimal_spec(**sections))
    result = capacity.plan(spec)
    assert isinstance(result, Plan)
    return spec, result


def deployment(**sections: Any) -> dict[str, Any]:
    spec, plan = planned(**sections)
    return render.make_deployment(REF, spec, plan, scrape_annotations=False)


def container(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]["containers"][0]


def test_render_is_deterministic() -> None:
    spec, plan = planned()
    first = render.render_all(REF, spec, plan, 32, podmonitor_available=True)
    second = render.render_all(REF, spec, plan, 32, podmonitor_available=True)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [c["kind"] for c in first] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "PodMonitor",
    ]


def test_every_child_is_owned_and_labelled() -> None:
    spec, plan = planned()
    for child in render.render_all(REF, spec, plan, 32, podmonitor_available=False):
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["ownerReferences"][0]["uid"] == "1234"
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"][names.SERVICE_LABEL] == "chat"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "tokenscale"


def test_deployment_uses_the_worker_image_contract() -> None:
    c = container(deployment())
    assert c["command"] == contract.WORKER_ENTRYPOINT
    assert c["ports"][0]["containerPort"] == contract.GATEWAY_PORT
    assert c["readinessProbe"]["httpGet"]["path"] == contract.READY_PATH
    assert c["livenessProbe"]["httpGet"]["path"] == contract.HEALTH_PATH


def test_gpu_limits_and_node_selection_follow_the_plan() -> None:
    dep = deployment(model={"source": "hf://m/l70", "architecture": "llama-3.1-70b"})
    c = container(dep)
    assert c["resources"]["limits"][names.GPU_RESOURCE] == "4"
    gpu_terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert gpu_terms == [
        {
            "matchExpressions": [
                {
                    "key": "nvidia.com/gpu.product",
                    "operator": "In",
                    "values": ["NVIDIA-H100-80GB-HBM3"],
                }
            ]
        }
    ]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/dev/shm" in mounts  # tensor parallel needs shared memory


def test_single_gpu_has_no_shm_volume_and_rolls_one_at_a_time() -> None:
    dep = deployment()
    assert "/dev/shm" not in {m["mountPath"] for m in container(dep)["volumeMounts"]}
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert "replicas" not in dep["spec"]  # owned by the scale subresource


def test_worker_config_round_trips_through_the_launcher() -> None:
    dep = deployment(engine={"extraArgs": ["--enforce-eager"]}, quantization={"method": "fp8"})
    env = {e["name"]: e.get("value") for e in container(dep)["env"]}
    config = WorkerConfig.model_validate_json(env[contract.CONFIG_ENV])
    args = build_vllm_args(config)
    assert "--quantization" in args and args[args.index("--quantization") + 1] == "fp8"
    assert args[-1] == "--enforce-eager"
    assert config.served_name == "chat"


def test_hub_token_comes_from_the_secret_never_inline() -> None:
    dep = deployment(secrets={"hubToken": {"name": "hf", "key": "tok"}})
    env = {e["name"]: e for e in container(dep)["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "tok"}
    assert "value" not in env["HF_TOKEN"]


def test_api_key_comes_from_the_secret_never_inline() -> None:
    dep = deployment(secrets={"apiKey": {"name": "gateway", "key": "key"}})
    env = {e["name"]: e for e in container(dep)["env"]}
    ref = env[contract.API_KEY_ENV]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "gateway", "key": "key"}
    assert "value" not in env[contract.API_KEY_ENV]


def test_worker_stops_before_the_kubelet_kills_it() -> None:
    """preStop sleep + --drain-grace + the worker's bounded shutdown fit the termination grace:
    the drain deadline, not SIGKILL, decides which requests are cut."""
    from tokenscale_worker.runner import SHUTDOWN_MARGIN_S

    pod = deployment()["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    grace = float(worker["args"][worker["args"].index("--drain-grace") + 1])
    pre_stop = worker["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + grace + SHUTDOWN_MARGIN_S < pod["terminationGracePeriodSeconds"]


def test_no_api_key_env_unless_the_spec_asks() -> None:
    names_ = [e["name"] for e in container(deployment())["env"]]
    assert contract.API_KEY_ENV not in names_


def test_pvc_source_is_mounted_read_only() -> None:
    dep = deployment(model={"source": "pvc://weights/llama", "architecture": "llama-3.1-8b"})
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}


def test_scrape_annotations_only_without_podmonitor() -> None:
    spec, plan = planned()
    with_pm = render.render_all(REF, spec, plan, 8, podmonitor_available=True)
    without = render.render_all(REF, spec, plan, 8, podmonitor_available=False)
    assert "annotations" not in with_pm[1]["spec"]["template"]["metadata"]
    assert (
        without[1]["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    )
    assert "PodMonitor" not in [c["kind"] for c in without]


@pytest.mark.parametrize("cap", [1, 16, 256])
def test_tuning_configmap_carries_the_cap(cap: int) -> None:
    cm = render.make_configmap(REF, cap)
    doc = json.loads(cm["data"]["tuning.json"])
    assert doc[contract.TUNING_CAP_KEY] == cap
    assert doc[contract.TUNING_QUEUE_KEY] >= cap


def test_placement_fields_pass_through() -> None:
    tol = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    dep = deployment(
        resources={
            "gpu": "h100-80gb",
            "nodeSelector": {"zone": "a"},
            "tolerations": [tol],
            "priorityClassName": "inference",
        }
    )
    pod = dep["spec"]["template"]["spec"]
    assert pod["tolerations"] == [tol]
    assert pod["nodeSelector"]["zone"] == "a"
    assert pod["priorityClassName"] == "inference"


def test_container_args_parse_with_the_worker_cli() -> None:
    from tokenscale_worker.cli import build_parser

    c = container(deployment())
    args = build_parser().parse_args([*c["command"][1:], *c["args"]])
    assert args.engine == "vllm" and args.port == contract.GATEWAY_PORT
    assert args.drain_grace < render.DRAIN_GRACE_SECONDS

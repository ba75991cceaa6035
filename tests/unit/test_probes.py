"""Probes sized to reality: a startup budget from the weights and the load bandwidth (floor 10
minutes), timeouts above the gateway's own engine wait, readiness that survives one slow answer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, probes, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale_contract import interface as contract


def rendered(**sections: Any) -> tuple[dict[str, Any], Plan]:
    spec = InferenceServiceSpec.model_validate(minimal_spec(**sections))
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    dep = render.make_deployment(ServiceRef("chat", "ns"), spec, plan, False)
    return dep["spec"]["template"]["spec"]["containers"][0], plan


def budget(container: dict[str, Any]) -> float:
    startup = container["startupProbe"]
    return float(startup["periodSeconds"] * startup["failureThreshold"])


@pytest.mark.parametrize("kind", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_every_probe_waits_longer_than_the_gateway_waits_on_the_engine(kind: str) -> None:
    container, _ = rendered()
    assert container[kind]["timeoutSeconds"] > contract.ENGINE_HEALTH_TIMEOUT_S


def test_readiness_survives_one_slow_answer() -> None:
    container, _ = rendered()
    assert container["readinessProbe"]["failureThreshold"] == 3
    assert container["readinessProbe"]["httpGet"]["path"] == contract.READY_PATH


def test_a_small_model_still_gets_ten_minutes_to_start() -> None:
    container, _ = rendered(scaling={"coldStartSeconds": 30})
    assert budget(container) >= 600


def test_startup_budget_grows_with_the_weights_at_the_load_bandwidth() -> None:
    model = {
        "source": "hf://m/405b",
        "architecture": "llama-3.1-405b",
        "checkpointFormat": "fbgemm_fp8",
    }
    container, plan = rendered(model=model, quantization={"method": "fp8"})
    load = plan.weights_gib * 1024**3 / probes.LOAD_BYTES_PER_SECOND
    # 378 GiB of fp8 weights at 256 MiB/s: about 1512 s to read, before the warm-up.
    assert budget(container) >= load + probes.WARMUP_SECONDS
    assert budget(container) > 600
    assert budget(container) < load + probes.WARMUP_SECONDS + probes.PROBE_PERIOD_SECONDS


def test_the_users_cold_start_still_counts_twice() -> None:
    container, _ = rendered(scaling={"coldStartSeconds": 900})
    assert budget(container) >= 1800


def cache_of(container: dict[str, Any], pod: dict[str, Any]) -> tuple[Any, Any]:
    volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    return volume["emptyDir"].get("sizeLimit"), container["resources"]["requests"].get(
        "ephemeral-storage"
    )


def rendered_pod(**sections: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = InferenceServiceSpec.model_validate(minimal_spec(**sections))
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    pod = render.make_deployment(ServiceRef("chat", "ns"), spec, plan, False)["spec"]["template"]
    return pod["spec"]["containers"][0], pod["spec"]


def test_an_hf_download_cache_is_sized_and_requested_from_the_checkpoint() -> None:
    # Llama-3.1-8B bf16: 14.96 GiB x 1.1 = 16.5 -> 17 + 2 GiB = 19Gi, on the disk and requested.
    model = {"source": "hf://m/8b", "architecture": "llama-3.1-8b"}
    assert cache_of(*rendered_pod(model=model)) == ("19Gi", "19Gi")
    # Online fp8 downloads the bf16 checkpoint: 131.5 GiB x 1.1 = 144.7 -> 145 + 2 = 147Gi.
    big = {"source": "hf://m/70b", "architecture": "llama-3.1-70b"}
    assert cache_of(*rendered_pod(model=big, quantization={"method": "fp8"})) == ("147Gi", "147Gi")


def test_a_pvc_model_downloads_nothing_and_requests_no_disk() -> None:
    model = {"source": "pvc://weights/llama/8b", "architecture": "llama-3.1-8b"}
    assert cache_of(*rendered_pod(model=model)) == (None, None)

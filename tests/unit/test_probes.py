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
from tokenscale_worker import contract


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
    model = {"source": "hf://m/405b", "architecture": "llama-3.1-405b"}
    container, plan = rendered(model=model, quantization={"method": "fp8"})
    load = plan.weights_gib * 1024**3 / probes.LOAD_BYTES_PER_SECOND
    # 378 GiB of fp8 weights at 256 MiB/s: about 1512 s to read, before the warm-up.
    assert budget(container) >= load + probes.WARMUP_SECONDS
    assert budget(container) > 600
    assert budget(container) < load + probes.WARMUP_SECONDS + probes.PROBE_PERIOD_SECONDS


def test_the_users_cold_start_still_counts_twice() -> None:
    container, _ = rendered(scaling={"coldStartSeconds": 900})
    assert budget(container) >= 1800

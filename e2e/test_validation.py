"""Malformed specs are refused by the real API server (OpenAPI schema and CEL) with a message naming
the field; valid but impossible specs are reported in status and Events, and nothing is created."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import minimal_spec
from tests.unit.test_api_schema import BAD_SPECS, set_in

from e2e.harness import Cluster, Operator, wait_for

# The API server words some checks its own way; the field name is always in the message.
SERVER_WORDING = {
    "resources.gpu=None": "spec.resources.gpu",
    "engine.unknownField=True": 'unknown field "spec.engine.unknownField"',
}


def manifest(spec: dict[str, Any], name: str = "bad") -> dict[str, Any]:
    return {
        "apiVersion": "tokenscale.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"), BAD_SPECS, ids=[f"{f}={v!r}" for f, v, _ in BAD_SPECS]
)
def test_api_server_rejects_bad_spec(
    cluster: Cluster, operator: Operator, field: str, value: Any, expected: str
) -> None:
    doc = manifest(set_in(minimal_spec(), field, value))
    proc = cluster.apply(doc, "default", check=False)
    assert proc.returncode != 0, f"accepted: {proc.stdout}"
    wanted = SERVER_WORDING.get(f"{field}={value!r}", expected)
    assert wanted in proc.stderr, proc.stderr


def test_name_too_long_is_rejected(cluster: Cluster, operator: Operator) -> None:
    proc = cluster.apply(manifest(minimal_spec(), name="x" * 60), "default", check=False)
    assert proc.returncode != 0
    assert "metadata.name must be at most 52 characters" in proc.stderr


@pytest.mark.parametrize("name", ["1abc", "a-b-", "llama-3.1"])
def test_name_that_is_no_service_name_is_rejected(
    cluster: Cluster, operator: Operator, name: str
) -> None:
    proc = cluster.apply(manifest(minimal_spec(), name=name), "default", check=False)
    assert proc.returncode != 0
    assert "metadata.name must be a DNS-1035 label" in proc.stderr


def test_impossible_spec_reported_in_status_and_event(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # 405B bf16 (756 GiB) on 4 H200s: a replica pinned to 4 GPUs of one node, so even the
    # multi-node group this cluster's LeaderWorkerSet would allow does not apply.
    spec = minimal_spec(
        model={"source": "hf://m/405b", "architecture": "llama-3.1-405b"},
        resources={"gpu": "h200-141gb", "gpusPerReplica": 4},
    )
    cluster.apply(manifest(spec, "huge"), namespace)

    def planned_false() -> dict[str, Any] | None:
        cond = cluster.condition("huge", namespace, "Planned")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for("Planned=False", planned_false, timeout=60)
    assert "756 GiB" in cond["message"] and "fp8" in cond["message"]
    ready = cluster.condition("huge", namespace, "Ready")
    assert ready is not None and ready["status"] == "False"
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Infeasible", "-o", "name"
    ).stdout
    assert events.strip(), "no Infeasible event"
    assert cluster.items("deployments", namespace) == []
    # A spec only a person can fix is not retried in a tight loop: one event, not a stream.
    import time

    time.sleep(5)
    again = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Infeasible", "-o", "json"
    ).stdout
    assert again.count('"reason": "Infeasible"') == 1


def test_extra_args_fighting_the_plan_are_reported(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # The API server refuses the options the spec owns (CEL); an option vLLM 0.32.0 does not know
    # needs the option table, which only the operator has.
    spec = minimal_spec(engine={"extraArgs": ["--disable-log-requests"]})
    cluster.apply(manifest(spec, "fight"), namespace)

    def invalid() -> dict[str, Any] | None:
        cond = cluster.condition("fight", namespace, "Ready")
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    cond = wait_for("Ready=False InvalidSpec", invalid, timeout=60)
    assert "spec.engine.extraArgs[0] ('--disable-log-requests') is not an option" in cond["message"]

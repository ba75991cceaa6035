"""Worker pods and the operator's own pod pass Pod Security Admission "restricted", keep the root
filesystem read-only with every path vLLM writes on a volume, and carry no ServiceAccount token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tests.unit.psa_restricted import restricted_violations
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef

CACHED = {"storageClassName": "filestore"}
SOURCES = {
    "hf": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "architecture": "llama-3.1-8b"},
    "s3-cached": {"source": "s3://weights/llama", "architecture": "llama-3.1-8b", "cache": CACHED},
    "pvc": {"source": "pvc://weights/llama/8b", "architecture": "llama-3.1-8b"},
    "tp4": {"source": "hf://m/l70", "architecture": "llama-3.1-70b"},
}


def pod(model: dict[str, Any]) -> dict[str, Any]:
    spec = InferenceServiceSpec.model_validate(minimal_spec(model=model))
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    dep = render.make_deployment(ServiceRef("chat", "ns"), spec, plan, False)
    result: dict[str, Any] = dep["spec"]["template"]["spec"]
    return result


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_worker_pods_pass_the_restricted_profile(source: str) -> None:
    assert restricted_violations(pod(SOURCES[source])) == []


def test_the_model_cache_fill_job_passes_the_restricted_profile() -> None:
    spec = InferenceServiceSpec.model_validate(minimal_spec(model=SOURCES["s3-cached"]))
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    children = render.render_all(ServiceRef("chat", "ns", "uid"), spec, plan, 8, False)
    job = next(c for c in children if c["kind"] == "Job")
    job_pod = job["spec"]["template"]["spec"]
    assert restricted_violations(job_pod) == []
    assert job_pod["automountServiceAccountToken"] is False
    # The worker's init container too (restricted checks every container).
    assert pod(SOURCES["s3-cached"])["initContainers"][0]["securityContext"]["runAsNonRoot"]


def test_the_checker_catches_what_the_api_server_refuses() -> None:
    worker = pod(SOURCES["hf"])
    worker["containers"][0]["securityContext"] = {"runAsNonRoot": True}
    del worker["securityContext"]["seccompProfile"]
    problems = restricted_violations(worker)
    assert "container worker must set allowPrivilegeEscalation=false" in problems
    assert "container worker must drop ALL capabilities" in problems
    assert "container worker needs seccompProfile RuntimeDefault or Localhost" in problems


def test_no_service_account_token_and_a_read_only_root() -> None:
    worker = pod(SOURCES["hf"])
    assert worker["automountServiceAccountToken"] is False
    assert worker["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["runAsUser"] == 1000


def test_every_directory_vllm_writes_is_a_writable_volume() -> None:
    worker = pod(SOURCES["hf"])
    container = worker["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    # HOME (~/.cache/vllm, ~/.config/vllm), the caches and /tmp (torch inductor) are writable.
    for var in ("HOME", "VLLM_CACHE_ROOT", "XDG_CACHE_HOME", "HF_HOME"):
        path = env[var]
        assert path is not None
        assert any(path == m or path.startswith(m + "/") for m in writable), var
    assert "/tmp" in writable


def test_the_operators_own_pod_passes_the_restricted_profile() -> None:
    from tests.unit.test_chart import render as helm_render

    operator = next(d for d in helm_render() if d["kind"] == "Deployment")
    assert restricted_violations(operator["spec"]["template"]["spec"]) == []

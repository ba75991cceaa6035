"""Every model source, rendered and launched together: the path a worker pod mounts is the path
vLLM is given, and what cannot work (s3:// without the model cache, paths leaving the claim) is
refused before any pod exists."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, model_cache, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.model_cache import cache_key
from tokenscale_worker.launcher import build_vllm_args


def service(source: str, **model: Any) -> tuple[InferenceServiceSpec, Plan]:
    spec = InferenceServiceSpec.model_validate(
        minimal_spec(model={"source": source, "architecture": "llama-3.1-8b", **model})
    )
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    return spec, plan


def rendered(source: str, **model: Any) -> tuple[dict[str, Any], list[str]]:
    """The worker pod spec and the vLLM argv its launcher builds from the rendered config."""
    spec, plan = service(source, **model)
    pod = render.make_deployment(ServiceRef("chat", "ns"), spec, plan, False)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = WorkerConfig.model_validate(json.loads(env[contract.CONFIG_ENV]))
    return pod["spec"], build_vllm_args(config)


def model_arg(argv: list[str]) -> str:
    return argv[argv.index("--model") + 1]


@pytest.mark.parametrize(
    ("source", "claim"),
    [
        ("pvc://weights/llama/8b", "weights"),
        ("pvc://weights/llama", "weights"),
        ("pvc://model-store.v2/org/Llama-3.1-8B-Instruct", "model-store.v2"),
    ],
)
def test_a_pvc_model_is_where_the_claim_is_mounted(source: str, claim: str) -> None:
    pod, argv = rendered(source)
    volume = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim"))
    assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    # The directory vLLM loads is inside the mounted claim, at the claim-relative path.
    inside = source.removeprefix(f"pvc://{claim}/")
    assert PurePosixPath(model_arg(argv)) == PurePosixPath(mount["mountPath"], inside)


def test_an_hf_model_downloads_into_a_writable_cache_at_its_pinned_revision() -> None:
    pod, argv = rendered("hf://meta-llama/Llama-3.1-8B-Instruct", revision="0e9e39f")
    assert model_arg(argv) == "meta-llama/Llama-3.1-8B-Instruct"
    assert argv[argv.index("--revision") + 1] == "0e9e39f"
    container = pod["containers"][0]
    hf_home = next(e["value"] for e in container["env"] if e["name"] == "HF_HOME")
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert hf_home in writable
    assert not any(v.get("persistentVolumeClaim") for v in pod["volumes"])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("pvc://weights/../../etc/passwd", ". or .. path segments"),
        ("pvc://weights/llama/./8b", ". or .. path segments"),
        ("s3://bucket/llama/8b", "s3:// model is read through the model cache"),
    ],
)
def test_sources_that_cannot_load_are_refused_by_the_spec(source: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InferenceServiceSpec.model_validate(
            minimal_spec(model={"source": source, "architecture": "llama-3.1-8b"})
        )


CACHE = {"storageClassName": "filestore"}


@pytest.mark.parametrize(
    ("source", "revision"),
    [("s3://weights/llama/8b", None), ("hf://meta-llama/Llama-3.1-8B-Instruct", "0e9e39f")],
)
def test_a_cached_model_is_read_where_the_fill_job_writes_it(
    source: str, revision: str | None
) -> None:
    extra = {"revision": revision} if revision else {}
    spec, plan = service(source, cache=CACHE, **extra)
    ref = ServiceRef("chat", "ns", "uid")
    children = {c["kind"]: c for c in render.render_all(ref, spec, plan, 8, False)}
    job_pod = children["Job"]["spec"]["template"]["spec"]
    pod, argv = rendered(source, cache=CACHE, **extra)
    claim = children["PersistentVolumeClaim"]["metadata"]["name"]
    # The fill Job writes the claim; every replica mounts the same claim read-only.
    job_claim = next(v for v in job_pod["volumes"] if v.get("persistentVolumeClaim"))
    pod_claim = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim"))
    assert job_claim["persistentVolumeClaim"] == {"claimName": claim}
    assert pod_claim["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    fill = job_pod["containers"][0]
    job_mount = next(m for m in fill["volumeMounts"] if m["name"] == job_claim["name"])
    assert not job_mount.get("readOnly")
    cache_dir = fill["args"][fill["args"].index("--cache-dir") + 1]
    assert job_mount["mountPath"] == cache_dir
    assert fill["args"][fill["args"].index("--source") + 1] == source
    assert ("--revision" in fill["args"]) == bool(revision)
    # The directory vLLM loads is the fill's key under the replica's read-only mount, and the
    # init container waits for that same key.
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == pod_claim["name"])
    assert mount["readOnly"] is True
    wait = pod["initContainers"][0]
    key = wait["args"][wait["args"].index("--key") + 1]
    assert key == cache_key(source, revision)
    assert model_arg(argv) == str(PurePosixPath(mount["mountPath"], key))
    assert "--revision" not in argv
    # Nothing downloads into the pod: no ephemeral-storage request for a model copy.
    assert "ephemeral-storage" not in pod["containers"][0]["resources"]["requests"]


def test_a_named_claim_is_used_as_it_is_and_not_created() -> None:
    spec, plan = service("s3://weights/m", cache={"claimName": "shared-models"})
    children = render.render_all(ServiceRef("chat", "ns", "uid"), spec, plan, 8, False)
    assert "PersistentVolumeClaim" not in {c["kind"] for c in children}
    job = next(c for c in children if c["kind"] == "Job")
    claims = [v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims[0]["persistentVolumeClaim"]["claimName"] == "shared-models"


def test_the_fill_job_is_renamed_when_its_pod_would_change() -> None:
    """A Job's template is immutable: a new image or source must be a new Job, not a 422."""
    ref = ServiceRef("chat", "ns", "uid")
    a, _ = service("s3://weights/m", cache=CACHE)
    b, _ = service("s3://weights/m2", cache=CACHE)
    assert model_cache.fill_job_name(ref, a) == model_cache.fill_job_name(ref, a)
    assert model_cache.fill_job_name(ref, a) != model_cache.fill_job_name(ref, b)
    assert len(model_cache.fill_job_name(ServiceRef("x" * 63, "ns"), a)) <= 63


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"source": "pvc://weights/m", "cache": CACHE}, "a pvc:// model is on shared storage"),
        ({"source": "s3://b/m", "cache": {}}, "set exactly one of claimName"),
        (
            {"source": "s3://b/m", "cache": {"claimName": "c", "storageClassName": "s"}},
            "set exactly one of claimName",
        ),
        ({"source": "s3://b/m", "cache": {"claimName": "c", "size": "1Gi"}}, "size applies only"),
        (
            {"source": "hf://a/b", "s3EndpointUrl": "http://minio:9000"},
            "s3EndpointUrl applies only to s3://",
        ),
    ],
)
def test_cache_settings_that_cannot_work_are_refused(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InferenceServiceSpec.model_validate(
            minimal_spec(model={"architecture": "llama-3.1-8b", **model})
        )

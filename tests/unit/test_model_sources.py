"""Every model source, rendered and launched together: the path a worker pod mounts is the path
vLLM is given, and what cannot work (s3:// today, paths leaving the claim) is refused before any
pod exists."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig
from tokenscale_worker.launcher import build_vllm_args


def rendered(source: str, **model: Any) -> tuple[dict[str, Any], list[str]]:
    """The worker pod spec and the vLLM argv its launcher builds from the rendered config."""
    spec = InferenceServiceSpec.model_validate(
        minimal_spec(model={"source": source, "architecture": "llama-3.1-8b", **model})
    )
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
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
        ("s3://bucket/llama/8b", "s3:// sources are not supported yet"),
    ],
)
def test_sources_that_cannot_load_are_refused_by_the_spec(source: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InferenceServiceSpec.model_validate(
            minimal_spec(model={"source": source, "architecture": "llama-3.1-8b"})
        )

"""--trust-remote-code reaches vLLM only through spec.engine.trustRemoteCode: rendered, launched
and refused in extraArgs with a message that names the field."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig
from tokenscale_contract.extra_args_guard import option_problems
from tokenscale_worker.launcher import build_vllm_args


def launched(**engine: Any) -> list[str]:
    spec = InferenceServiceSpec.model_validate(minimal_spec(engine=engine))
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    pod = render.make_deployment(ServiceRef("chat", "ns"), spec, plan, False)["spec"]["template"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    return build_vllm_args(WorkerConfig.model_validate(json.loads(env[contract.CONFIG_ENV])))


def test_off_by_default() -> None:
    assert "--trust-remote-code" not in launched()


def test_the_spec_field_turns_it_on() -> None:
    assert launched(trustRemoteCode=True).count("--trust-remote-code") == 1


def test_extra_args_point_at_the_field() -> None:
    (message,) = option_problems(["--trust-remote"])
    assert "sets --trust-remote-code" in message
    assert "set spec.engine.trustRemoteCode: true" in message

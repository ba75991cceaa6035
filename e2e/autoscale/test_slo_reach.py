"""An objective physics forbids: prompts an idle replica cannot prefill within the TTFT
objective. The operator reads the prompt lengths from Prometheus (vLLM's request_prompt_tokens
histogram, exported by the worker), says SLOFeasible=False with the length beyond which the
objective is out of reach, posts one Warning Event, and says True again once such prompts are
within what the percentile tolerates."""

from __future__ import annotations

from typing import Any

from e2e.autoscale.conftest import Scenario
from e2e.autoscale.helpers import record_result, service
from e2e.fleet.loadgen import Phase
from e2e.harness import wait_for
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, slo_reach


def test_prompts_no_replica_can_serve_in_time_are_reported(scenario: Scenario) -> None:
    sc, svc = scenario, scenario.service()
    doc = service(slo={"ttftSeconds": 0.5, "itlSeconds": 0.1})
    sc.cluster.apply(doc, sc.namespace)
    spec = InferenceServiceSpec.model_validate(doc["spec"])
    plan = capacity.plan(spec)
    assert isinstance(plan, capacity.Plan)
    limit = slo_reach.longest_prompt_within(spec, plan)  # 2003 tokens on one L4 at 0.5 s
    assert 0 < limit < spec.model.max_model_len - 1000

    load = sc.load(sc.fleet.front(svc.name))
    load.start(Phase("long", concurrency=2, prompt_tokens=limit + 800, max_tokens=8))

    def feasible(status: str) -> dict[str, Any] | None:
        cond = svc.condition("SLOFeasible")
        return cond if cond.get("status") == status else None

    out = wait_for("SLOFeasible=False", lambda: feasible("False"), timeout=120, every=1)
    assert out["reason"] == "PromptsOutOfReach", out
    assert f"prompts over {limit} tokens" in out["message"], out
    events = wait_for("an SLOOutOfReach Event", lambda: svc.events("SLOOutOfReach"), timeout=30)
    assert events[0]["type"] == "Warning" and str(limit) in events[0]["message"]

    # Short prompts only: once the long ones leave the window, the objective is attainable.
    load.set(Phase("short", concurrency=2, prompt_tokens=200, max_tokens=8))
    back = wait_for("SLOFeasible=True", lambda: feasible("True"), timeout=120, every=1)
    assert back["reason"] == "WithinTolerance", back
    assert len(svc.events("SLOOutOfReach")) == 1  # one Event per entry, not one per tick
    load.stop()
    record_result("slo_out_of_reach", {"longest_prompt": limit, "message": out["message"]})

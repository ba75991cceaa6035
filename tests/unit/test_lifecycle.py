from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, lifecycle, status
from tokenscale.domain.capacity import Plan
from tokenscale.domain.lifecycle import SpecError
from tokenscale.domain.status import WorkloadState

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def spec_of(**sections: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(minimal_spec(**sections))


def test_parse_spec_names_bad_fields() -> None:
    result = lifecycle.parse_spec(minimal_spec(scaling={"minReplicas": 3, "maxReplicas": 1}))
    assert isinstance(result, SpecError)
    assert "spec.scaling" in result.message and "minReplicas must not exceed" in result.message


def test_parse_spec_rejects_planned_flags_in_extra_args() -> None:
    result = lifecycle.parse_spec(minimal_spec(engine={"extraArgs": ["--tensor-parallel-size=2"]}))
    assert isinstance(result, SpecError)
    assert "spec.engine.extraArgs[0]" in result.message


@pytest.mark.parametrize(
    ("mode", "current", "expected"),
    [
        ("auto", None, 2),
        ("auto", 1, 2),
        ("auto", 9, 5),
        ("auto", 3, None),
        ("advisory", 9, None),
        ("advisory", None, 2),
        ("off", 4, 2),
        ("off", 2, None),
    ],
)
def test_bounded_replicas(mode: str, current: int | None, expected: int | None) -> None:
    spec = spec_of(scaling={"mode": mode, "minReplicas": 2, "maxReplicas": 5})
    assert lifecycle.bounded_replicas(spec, current) == expected


def test_concurrency_cap_keeps_the_autoscalers_choice_within_bounds() -> None:
    spec = spec_of()
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    assert lifecycle.concurrency_cap(spec, plan, {}) == plan.max_concurrency
    assert lifecycle.concurrency_cap(spec, plan, {"plan": {"concurrencyCap": 40}}) == 40
    assert lifecycle.concurrency_cap(spec, plan, {"plan": {"concurrencyCap": 1}}) == 16
    off = spec_of(scaling={"batch": {"enabled": False}})
    assert (
        lifecycle.concurrency_cap(off, plan, {"plan": {"concurrencyCap": 40}})
        == plan.max_concurrency
    )


def pod(phase: str, unschedulable: bool = False, deleting: bool = False) -> dict[str, Any]:
    conds = [
        {
            "type": "PodScheduled",
            "status": "False",
            "message": "0/4 nodes: Insufficient nvidia.com/gpu",
        }
    ]
    meta: dict[str, Any] = {"deletionTimestamp": NOW} if deleting else {}
    return {
        "metadata": meta,
        "status": {"phase": phase, "conditions": conds if unschedulable else []},
    }


def test_workload_state_counts_unschedulable_pods() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "readyReplicas": 2,
            "updatedReplicas": 3,
        },
    }
    pods = [
        pod("Running"),
        pod("Running"),
        pod("Pending", unschedulable=True),
        pod("Pending", True, True),
    ]
    state = lifecycle.workload_state(dep, pods)
    assert (state.replicas, state.ready, state.unschedulable) == (3, 2, 1)
    assert "Insufficient nvidia.com/gpu" in state.unschedulable_message


def test_conditions_ready_progressing_capacity() -> None:
    state = WorkloadState(
        exists=True,
        replicas=3,
        current=3,
        ready=2,
        updated=3,
        unschedulable=1,
        unschedulable_message="Insufficient nvidia.com/gpu",
    )
    conds = status.workload_conditions([], state, NOW, 4)
    by_type = {c["type"]: c for c in conds}
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Progressing"]["status"] == "True"
    assert by_type["CapacityLimited"]["status"] == "True"
    assert "2 of 3 replicas fit" in by_type["CapacityLimited"]["message"]
    assert all(c["observedGeneration"] == 4 for c in conds)


def test_transition_time_moves_only_when_status_changes() -> None:
    none = status.Condition.READY_NONE
    first = status.set_condition([], none, NOW, 1, replicas=1)
    same = status.set_condition(first, none, LATER, 1, replicas=2)
    flipped = status.set_condition(same, status.Condition.READY, LATER, 1, ready=1, replicas=1)
    assert same[0]["lastTransitionTime"] == NOW
    assert same[0]["message"].startswith("0 of 2 replicas ready")
    assert flipped[0]["lastTransitionTime"] == LATER
    assert (flipped[0]["status"], flipped[0]["reason"]) == ("True", "Serving")


def test_infeasible_plan_sets_planned_and_ready_false() -> None:
    spec = spec_of(model={"source": "hf://m/405", "architecture": "llama-3.1-405b"})
    result = capacity.plan(spec)
    conds = {c["type"]: c for c in status.planned_conditions([], result, NOW, 1)}
    assert conds["Planned"]["status"] == "False" and conds["Planned"]["reason"] == "Infeasible"
    assert conds["Ready"]["status"] == "False" and "756 GiB" in conds["Ready"]["message"]


def test_an_unusable_spec_says_what_to_fix_and_that_nothing_was_created() -> None:
    problems = "spec.scaling.maxReplicas: Input should be greater than or equal to 1"
    conds = {c["type"]: c for c in status.unusable_conditions([], problems, NOW, 3)}
    for kind in ("Planned", "Ready"):
        assert conds[kind]["reason"] == "InvalidSpec"
        assert conds[kind]["message"] == (
            f"{problems}; nothing is created or changed until the spec is fixed"
        )
    assert status.unusable_event(problems) == ("Warning", "InvalidSpec", conds["Ready"]["message"])


def test_pending_replicas_name_the_fix() -> None:
    state = WorkloadState(
        exists=True,
        replicas=3,
        current=3,
        ready=1,
        updated=3,
        unschedulable=2,
        unschedulable_message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
    )
    conds = {c["type"]: c for c in status.workload_conditions([], state, NOW, 1)}
    assert conds["CapacityLimited"]["message"] == (
        "1 of 3 replicas fit on schedulable GPUs and 2 pods are Pending (0/4 nodes are "
        "available: 4 Insufficient nvidia.com/gpu); add GPU nodes of the planned kind or lower "
        "scaling.maxReplicas"
    )

"""Drift is a change at the paths tokenscale applied, and nothing else."""

from __future__ import annotations

import copy
from typing import Any

from tokenscale.domain.drift import fingerprint, project

APPLIED: dict[str, Any] = {
    "metadata": {"name": "chat", "labels": {"app": "chat"}},
    "spec": {
        "selector": {"app": "chat"},
        "template": {"spec": {"containers": [{"name": "worker", "image": "w:1", "args": ["a"]}]}},
    },
}


def stored() -> dict[str, Any]:
    """What the API server returns: the manifest plus defaults, other fields and status."""
    live = copy.deepcopy(APPLIED)
    live["metadata"] |= {"resourceVersion": "7", "uid": "u"}
    live["spec"]["replicas"] = 3
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    live["status"] = {"readyReplicas": 1}
    return live


def same(live: dict[str, Any]) -> bool:
    return fingerprint(project(live, APPLIED)) == fingerprint(project(stored(), APPLIED))


def test_defaults_status_and_other_fields_are_not_drift() -> None:
    live = stored()
    live["status"] = {"readyReplicas": 2}
    live["spec"]["replicas"] = 5  # the autoscaler's field, not in the manifest
    live["metadata"]["resourceVersion"] = "8"
    live["metadata"]["labels"]["added-by"] = "someone"  # another manager's label
    assert same(live)


def test_an_edit_at_an_applied_path_is_drift() -> None:
    live = stored()
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    assert not same(live)


def test_an_added_or_removed_list_element_is_drift() -> None:
    longer = stored()
    longer["spec"]["template"]["spec"]["containers"][0]["args"].append("b")
    assert not same(longer)
    shorter = stored()
    shorter["spec"]["template"]["spec"]["containers"][0]["args"] = []
    assert not same(shorter)


def test_a_removed_field_is_drift() -> None:
    live = stored()
    del live["spec"]["selector"]
    assert not same(live)


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})

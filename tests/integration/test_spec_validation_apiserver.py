"""The hostile spec suites against a real kube-apiserver with the generated CRD: the API server
accepts the CRD's CEL rules (their cost fits its budget), refuses every spec the Python check
refuses wherever its rules can tell, with the rule's own message, and accepts what Python accepts.
Server-side dry run: nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.apiserver import ControlPlane
from tests.conftest import minimal_spec
from tests.unit.crd_check import SCHEMA
from tests.unit.extra_args_cases import ISSUE_CASES, OWN_CASES
from tests.unit.hostile import document, python_problems, server_problems
from tests.unit.test_api_schema import set_in
from tests.unit.test_extra_args_hostile import ALLOWED
from tests.unit.test_spec_hostile import NAME_CASES, SPEC_CASES
from tokenscale.api.v1alpha1 import GROUP, PLURAL, VERSION

DOCS: list[tuple[str, dict[str, Any]]] = (
    [(f"{f}={v!r}", document(set_in(minimal_spec(), f, v))) for f, v, _ in SPEC_CASES]
    + [(f"name={n[:20]!r}", document(name=n or "x")) for n, _ in NAME_CASES if n]
    + [(" ".join(a), document(minimal_spec(engine={"extraArgs": a})))
       for a, _, _ in ISSUE_CASES + OWN_CASES]
    + [("allowed " + " ".join(a), document(minimal_spec(engine={"extraArgs": a})))
       for a in ALLOWED]
    + [("valid", document())]
    # The length-aware TTFT objective's cross-field rule: within 3600 s for the longest prompt.
    + [("ttft allowance within", document(minimal_spec(slo={"ttftSecondsPer1kPromptTokens": 30})))]
    + [("ttft allowance over", document(minimal_spec(
        model={**minimal_spec()["model"], "maxModelLen": 131072},
        slo={"ttftSecondsPer1kPromptTokens": 30})))]
)  # fmt: skip


def _rule_messages(node: dict[str, Any]) -> set[str]:
    found = {r["message"] for r in node.get("x-kubernetes-validations", [])}
    for child in (node.get("properties") or {}).values():
        found |= _rule_messages(child)
    if isinstance(node.get("items"), dict):
        found |= _rule_messages(node["items"])
    return found


RULE_MESSAGES = _rule_messages(SCHEMA)


def refusal(plane: ControlPlane, doc: dict[str, Any]) -> str | None:
    """The API server's message when it refuses `doc` (strict field validation, dry run)."""
    api = client.CustomObjectsApi(plane.api_client())
    try:
        api.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, doc, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        assert exc.status in (400, 422), exc.body
        return str(json.loads(exc.body or "{}").get("message", exc.reason))
    return None


@pytest.mark.parametrize(("case", "doc"), DOCS, ids=[c for c, _ in DOCS])
def test_real_api_server_gives_the_crd_verdict(
    control_plane: ControlPlane, case: str, doc: dict[str, Any]
) -> None:
    expected = server_problems(doc)
    message = refusal(control_plane, doc)
    assert (message is not None) == bool(expected), (case, message, expected)
    # A rule's message reaches the user as written (schema errors use the server's wording, and
    # the server runs no rule on an object its schema already refused).
    ran_rules = message is not None and "validation rules were not checked" not in message
    for problem in set(expected) & RULE_MESSAGES if ran_rules else []:
        assert message is not None and problem in message, (problem, message)
    if message is None:
        # What only the operator can refuse: options vLLM does not know and stray values (no
        # option table in the API server), and 64.0 for an integer (one JSON number type).
        operator_only = ("is not an option of vLLM", "is a value with no option", "(got 64.0)")
        assert all(any(o in p for o in operator_only) for p in python_problems(doc)), case

"""What the API server would say about an object, computed from the generated CRD alone: defaults
applied, nulls pruned, unknown fields refused (kubectl's strict field validation), the OpenAPI
schema checked with jsonschema, and every x-kubernetes-validations rule of the CRD evaluated by
cel-python on the node it sits on. The operator's own check (pydantic plus the same CEL text)
must agree with it; tests compare the two."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from tokenscale.api import crdgen
from tokenscale.api.v1alpha1 import cel

SCHEMA = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

# JSON has one number type: the API server takes 64.0 as the integer 64 (a real kube-apiserver
# accepts it; tests/integration/test_spec_validation_apiserver.py checks this model of it).
_TYPES = jsonschema.Draft4Validator.TYPE_CHECKER.redefine(
    "integer",
    lambda checker, value: (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
    ),
)
_VALIDATOR = jsonschema.validators.extend(jsonschema.Draft4Validator, type_checker=_TYPES)(SCHEMA)


def _prune_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _prune_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_prune_nulls(v) for v in obj]
    return obj


def _default(node: dict[str, Any], obj: Any) -> Any:
    if isinstance(obj, dict) and "properties" in node:
        for name, child in node["properties"].items():
            if name not in obj and "default" in child:
                obj[name] = copy.deepcopy(child["default"])
            if name in obj:
                obj[name] = _default(child, obj[name])
    if isinstance(obj, list) and isinstance(node.get("items"), dict):
        return [_default(node["items"], item) for item in obj]
    return obj


def _unknown_fields(node: dict[str, Any], obj: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict) and "properties" in node and path != ".metadata":
        for name, value in obj.items():
            if name not in node["properties"]:
                found.append(f'unknown field "{path[1:]}.{name}"')
            else:
                found += _unknown_fields(node["properties"][name], value, f"{path}.{name}")
    if isinstance(obj, list) and isinstance(node.get("items"), dict):
        for item in obj:
            found += _unknown_fields(node["items"], item, path)
    return found


def _cel_failures(node: dict[str, Any], obj: Any) -> list[str]:
    found = [
        r["message"]
        for r in node.get("x-kubernetes-validations", [])
        if not cel.holds(r["rule"], obj)
    ]
    if isinstance(obj, dict):
        for name, child in (node.get("properties") or {}).items():
            if name in obj:
                found += _cel_failures(child, obj[name])
    if isinstance(obj, list) and isinstance(node.get("items"), dict):
        for item in obj:
            found += _cel_failures(node["items"], item)
    return found


def server_problems(doc: dict[str, Any]) -> list[str]:
    """The API server's refusals of `doc` (empty: it would store it)."""
    obj = _default(SCHEMA, _prune_nulls(copy.deepcopy(doc)))
    problems = _unknown_fields(SCHEMA, obj, "")
    schema_errors = list(_VALIDATOR.iter_errors(obj))
    problems += [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in schema_errors]
    if problems:
        # The API server runs CEL only on a schema-valid object.
        return problems
    return _cel_failures(SCHEMA, obj)

"""Turn the pydantic models into a structural CustomResourceDefinition.

pydantic emits JSON Schema 2020-12 with `$defs`/`$ref`, `anyOf` for optionals and numeric
`exclusiveMinimum`; Kubernetes wants a structural OpenAPI v3 schema: everything inlined, one type
per node, `x-kubernetes-int-or-string` for `int | "auto"`, boolean `exclusiveMinimum`.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from tokenscale.api import v1alpha1 as api

# JSON Schema keys that carry over unchanged.
_KEPT = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
}


# A field's schema extra: the optional object's absence is a setting (spec.model.cache unset: no
# cache), so the API server must not default it to `{}`.
UNSET_MEANS_OFF = "tokenscaleUnsetMeansOff"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = dict(defs[name])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`X | None` becomes X (optional = not required); `int | "auto"` becomes int-or-string."""
    options = [_resolve(o, defs) for o in node["anyOf"] if o.get("type") != "null"]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(options) == 1:
        merged = dict(options[0])
        merged.update(rest)
        return merged
    kinds = {o.get("type") for o in options}
    if kinds == {"integer", "string"}:
        rest["x-kubernetes-int-or-string"] = True
        return rest
    raise ValueError(f"cannot express anyOf {options} structurally")


def _numeric_bounds(node: dict[str, Any]) -> dict[str, Any]:
    """`const` becomes a one-value enum; 2020-12 numeric exclusive bounds become OpenAPI v3's
    boolean form."""
    out: dict[str, Any] = {}
    if "const" in node:
        out["enum"] = [node["const"]]
        out["type"] = node.get("type", "string")
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        out["maximum"] = node["exclusiveMaximum"]
        out["exclusiveMaximum"] = True
    return out


def convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic schema node (recursively) to a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT}
    if out.get("default", 0) is None:
        # An absent optional field is already "unset"; a null default would fail validation.
        del out["default"]
    out.update({k: v for k, v in node.items() if k.startswith("x-kubernetes-")})
    if node.get(UNSET_MEANS_OFF):
        out[UNSET_MEANS_OFF] = True
    out.update(_numeric_bounds(node))
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: convert(v, defs) for k, v in node["properties"].items()}
        if node.get("required"):
            out["required"] = sorted(node["required"])
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = convert(node["additionalProperties"], defs)
    elif node.get("type") == "object" and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = convert(node["items"], defs)
    return out


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return convert(raw, raw.get("$defs", {}))


def _with_object_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """Default each optional sub-object to `{}` so the API server fills in its field defaults
    (a spec without `slo:` still gets ttftSeconds 1.0)."""
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "object" and "properties" in prop:
            _with_object_defaults(prop)
            off = prop.pop(UNSET_MEANS_OFF, False)
            if name not in schema.get("required", []) and not _has_required(prop) and not off:
                prop.setdefault("default", {})
    return schema


def _has_required(schema: dict[str, Any]) -> bool:
    return bool(schema.get("required"))


def openapi_schema() -> dict[str, Any]:
    """The full openAPIV3Schema of the InferenceService kind."""
    spec = _with_object_defaults(_schema_of(api.InferenceServiceSpec))
    status = _schema_of(api.InferenceServiceStatus)
    return {
        "type": "object",
        "description": (api.InferenceService.__doc__ or "").replace("\n    ", " ").strip(),
        "required": ["spec"],
        "x-kubernetes-validations": [r.as_cel() for r in api.InferenceService.RULES],
        "properties": {
            "apiVersion": {"type": "string", "description": "tokenscale.io/v1alpha1"},
            "kind": {"type": "string", "description": "InferenceService"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "tokenscale"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["tokenscale"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": api.PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


GENERATED_HEADER = (
    "# GENERATED by `tokenscale crds` from operator/tokenscale/api/v1alpha1.py. Do not edit.\n"
)


def crd_yaml() -> str:
    """The CRD as YAML text, stable across runs."""
    body = yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)
    return GENERATED_HEADER + body


def chart_crd_template() -> str:
    """The chart's CRD template: the same CRD, gated by crds.enabled and kept on uninstall when
    crds.keep is set."""
    doc = crd()
    body = yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
    # Helm needs template syntax inside the metadata; insert it textually after the name line.
    name_line = f"  name: {doc['metadata']['name']}\n"
    keep = (
        "  {{- if .Values.crds.keep }}\n  annotations:\n    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
    )
    body = body.replace(name_line, name_line + keep, 1)
    # Templates run through Go templating: escape any literal "{{" in descriptions.
    return "{{- if .Values.crds.enabled }}\n" + GENERATED_HEADER + body + "{{- end }}\n"


def schema_json() -> str:
    """The spec schema as JSON (for editors and tests)."""
    return json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n"

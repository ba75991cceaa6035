"""Building blocks of the API models: one `Rule` is both the CEL rule the API server runs and the
check the operator and the CLI run (the same text, evaluated by cel-python), and `_Model` sets the
conventions (camelCase, frozen, strict types, unknown fields refused)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from tokenscale.api.v1alpha1 import cel

# Kubernetes quantities, ASCII only: pydantic's regex engine reads \d and \w as Unicode classes
# while the API server's (Go RE2) reads them as ASCII, so patterns spell their classes out.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$"
# One argument per list item: whitespace, control characters or shell syntax mean a shell string
# was pasted in. RE2 syntax (the API server's and cel-python's); RE2's `\s` is only [\t\n\f\r ],
# so whitespace is spelled as Unicode classes: separators (\pZ: space, no-break space, ...) and
# control and format characters (\pC: tab, newline, vertical tab, ...), a superset of Python's \s.
SHELL_CHARS_CEL = "[\\\\pZ\\\\pC;&|$`<>]"
DEFAULT_WORKER_IMAGE = "tokenscale/worker:0.1.0"
# DNS-1035 label: Service names (the InferenceService name becomes one) must be these.
DNS1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# DNS-1123 subdomain: names of Secrets, PriorityClasses and most other objects.
DNS1123_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule in CEL, enforced by the API server (x-kubernetes-validations) and, from
    the same text, by `_Model` when the operator or the CLI parses a spec."""

    rule: str
    message: str
    field_path: str | None = None

    def as_cel(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry

    def holds_for(self, obj: dict[str, Any]) -> bool:
        return cel.holds(self.rule, obj)


def _add_rules(schema: dict[str, Any], model: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "RULES", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.as_cel() for r in rules]


class _Model(BaseModel):
    # strict: "8192" is not 8192 and "yes" is not true, as in the API server's schema validation.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
        json_schema_extra=_add_rules,
    )
    RULES: ClassVar[tuple[Rule, ...]] = ()
    # Rules whose failure `_precise_problems` explains better (per item, with the fix); their
    # own message is left out when a precise problem is reported.
    EXPLAINED_RULES: ClassVar[tuple[Rule, ...]] = ()

    def _precise_problems(self) -> list[str]:
        return []

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        rules = type(self).RULES
        if not rules:
            return self
        precise = self._precise_problems()
        # What the API server's CEL sees: defaults applied, unset optionals absent.
        obj = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        skip = type(self).EXPLAINED_RULES if precise else ()
        failed = [r.message for r in rules if r not in skip and not r.holds_for(obj)]
        if precise or failed:
            raise ValueError("; ".join(precise + failed))
        return self

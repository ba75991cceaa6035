"""Building blocks of the API models: one `Rule` gives both the CEL rule and the Python check,
and `_Model` sets the conventions (camelCase, frozen, unknown fields refused)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$"
# One argument per list item: whitespace or shell syntax means a shell string was pasted in.
SHELL_CHARS_CEL = "[\\\\s;&|$`<>]"
DEFAULT_WORKER_IMAGE = "tokenscale/worker:0.1.0"


_SHELL_CHARS = re.compile(r"[\s;&|$`<>]")


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, enforced twice from one definition: as CEL by the API server and as
    `check` when the operator or the CLI parses a spec."""

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def as_cel(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def _add_rules(schema: dict[str, Any], model: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "RULES", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.as_cel() for r in rules]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra=_add_rules,
    )
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).RULES:
            if not rule.check(self):
                raise ValueError(rule.message)
        return self

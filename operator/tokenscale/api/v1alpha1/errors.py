"""One line per problem in a spec, naming the field and the fix, from pydantic's errors.

Rule messages already name their field (`spec.engine.image must be ...`) and are kept as written;
type errors get the fix pydantic does not give: "8192" in quotes is a string, not a number.
"""

from __future__ import annotations

from pydantic import ValidationError

_FIXES = {
    "int_type": "write a whole number without quotes, e.g. 8192",
    "float_type": "write a number without quotes, e.g. 0.5",
    "bool_type": "write true or false without quotes",
    "string_type": "write it as a string",
    "list_type": "write a list, one item per '- ' line",
    "dict_type": "write a mapping of keys to values",
    "model_type": "write a mapping of the fields kubectl explain lists",
    "model_attributes_type": "write a mapping of the fields kubectl explain lists",
    "extra_forbidden": "remove it or fix its spelling (kubectl explain inferenceservice.spec "
    "lists the fields)",
    "missing": "add it",
}


# The accepted forms of the fields checked by a pattern, said in words instead of the regex.
_FORMS = {
    "spec.model.source": "use hf://org/name, pvc://claim/path or s3://bucket/path (ASCII letters, "
    "digits, _ . - in names)",
    "spec.resources.cpu": "use a Kubernetes quantity such as 8 or 500m",
    "spec.resources.memory": "use a Kubernetes quantity such as 64Gi or 512Mi",
}


def _path(prefix: str, loc: tuple[str | int, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or "(" in part:
            # A union branch label (int, literal['auto']), not a field.
            continue
        else:
            path += f".{part}" if path else part
    return path


def problems(exc: ValidationError, prefix: str = "spec") -> list[str]:
    """Each problem of `exc` as one line that names the field and the fix."""
    lines: list[str] = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        path = _path(prefix, err["loc"])
        if err["type"] == "value_error" and message.startswith(("spec.", "metadata.")):
            line = message
        elif err["type"] == "string_pattern_mismatch":
            form = _FORMS.get(path, f"kubectl explain inferenceservice.{path} says the form")
            line = f"{path}: {err['input']!r} is not in the accepted form; {form}"
        else:
            line = f"{path}: {message}"
            fix = _FIXES.get(err["type"])
            if fix and err["type"] not in ("missing", "extra_forbidden"):
                line += f" (got {err['input']!r}); {fix}"
            elif fix:
                line += f"; {fix}"
        if line not in lines:
            lines.append(line)
    return lines

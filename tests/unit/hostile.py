"""Shared pieces of the hostile-input suites: the Python verdict on a whole InferenceService (the
one `tokenscale plan -f` and the operator give), the API server's verdict computed from the CRD
(crd_check), and the tally the closing note reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from tests.conftest import minimal_spec
from tests.unit.crd_check import server_problems
from tokenscale.api.v1alpha1 import InferenceService
from tokenscale.api.v1alpha1.errors import problems
from tokenscale.domain.lifecycle import SpecError, parse_spec
from tokenscale_contract.extra_args import validate_extra_args


def document(spec: dict[str, Any] | None = None, name: str = "svc") -> dict[str, Any]:
    return {
        "apiVersion": "tokenscale.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": minimal_spec() if spec is None else spec,
    }


def python_problems(doc: dict[str, Any]) -> list[str]:
    """Every problem the Python side finds: the models (their CEL rules included), then the
    launcher's own extraArgs check, as the operator runs them."""
    try:
        service = InferenceService.model_validate(doc)
    except ValidationError as exc:
        return problems(exc, prefix="")
    return validate_extra_args(service.spec.engine.extra_args)


def operator_message(spec: dict[str, Any]) -> str | None:
    """The message the operator puts in status for `spec` (None: it accepts it)."""
    parsed = parse_spec(spec)
    return parsed.message if isinstance(parsed, SpecError) else None


def tally(
    docs: Iterable[dict[str, Any]], check: Callable[[dict[str, Any]], list[str]]
) -> Counter[str]:
    """tried / rejected clearly (every problem names its field) / accepted silently / crashed."""
    counts: Counter[str] = Counter()
    for doc in docs:
        counts["tried"] += 1
        try:
            found = check(doc)
        except Exception:  # a crash is what this counts
            counts["crashed"] += 1
            continue
        if not found:
            counts["accepted silently"] += 1
        elif all(p.startswith(("spec.", "metadata.")) for p in found):
            counts["rejected clearly"] += 1
        else:
            counts["rejected unclearly"] += 1
    return counts


__all__ = ["document", "operator_message", "python_problems", "server_problems", "tally"]

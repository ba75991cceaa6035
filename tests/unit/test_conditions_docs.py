"""docs/operations.md lists every condition and Event tokenscale can write, with its message
template, and every Prometheus failure cause: the tables and the code's registries
(domain/status.py) must be equal, row for row, both ways. Every condition and Event the code
writes goes through those registries (`set_condition` and `event_message` take a member), so
what is listed is what can appear."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import get_args

import pytest

from tokenscale.api.v1alpha1.status import ConditionType
from tokenscale.domain.status import Condition, Event, PrometheusProblem, Template

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def table(header: str) -> list[list[str]]:
    """The rows of the markdown table whose header row is `header`."""
    lines = DOCS.read_text().splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), f"message not in backticks: {cell}"
    return cell[1:-1]


def templates() -> list[Template]:
    return [member.value for member in (*Condition, *Event)]


def test_every_condition_and_event_is_documented_and_nothing_else() -> None:
    documented = {
        (kind, status, reason, code(message))
        for kind, status, reason, message in table("| kind | status | reason | message |")
    }
    in_code = {(t.kind, t.status, t.reason, t.text) for t in templates()}
    assert in_code - documented == set(), "undocumented (add these rows to docs/operations.md)"
    assert documented - in_code == set(), "documented but not in domain/status.py"


def test_every_prometheus_cause_is_documented_and_nothing_else() -> None:
    documented = {
        (cause, code(what), remedy)
        for cause, what, remedy in table("| cause | `{problem}` | `{remedy}` |")
    }
    in_code = {
        (p.name.lower().replace("_", " "), p.value[0], p.value[1]) for p in PrometheusProblem
    }
    assert in_code - documented == set()
    assert documented - in_code == set()


@pytest.mark.parametrize("template", templates(), ids=lambda t: f"{t.kind}-{t.reason}")
def test_each_message_reads_as_one_sentence(template: Template) -> None:
    fields = [name for _, name, _, _ in string.Formatter().parse(template.text) if name]
    text = template.message(**{name: "x" for name in fields})
    assert "\n" not in text and not text.endswith(".")
    assert not re.search(r"Traceback|Exception|%[0-9A-F]{2}", text)
    # A problem's message goes on to what tokenscale did about it or what the user can do.
    if template.reason in PROBLEMS:
        assert re.search(r"; (tokenscale|nothing|replicas held|add|check|remove|set|status)", text)


PROBLEMS = {
    "Infeasible",
    "InvalidSpec",
    "NoReadyReplicas",
    "Unschedulable",
    "NotEnoughGPUs",
    "PrometheusUnavailable",
    "NoSeries",
    "ObjectiveMissed",
    "ForeignWriter",
    "Recommendation",
}


def test_the_problem_list_names_real_reasons() -> None:
    assert {t.reason for t in templates()} >= PROBLEMS


def test_every_condition_written_is_a_type_the_crd_accepts() -> None:
    """The status schema enumerates condition types: one the code writes but the schema lacks
    makes the API server refuse the whole status write (422)."""
    accepted = set(get_args(ConditionType))
    written = {t.kind for t in templates() if t.kind != "Event"}
    assert written - accepted == set(), "add these to ConditionType in api/v1alpha1/status.py"

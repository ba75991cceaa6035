"""The operator's log: text or JSON lines, the level, kopf's per-event chatter kept to debug, and
a failure logged when it starts, changes and ends rather than on every tick."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tokenscale.adapters import logs
from tokenscale.adapters.settings import LogSettings
from tokenscale.cli import build_parser
from tokenscale.domain.names import ServiceRef
from tokenscale.handlers import autoscale as handler


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    yield out
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


RECORD = {
    "time": "2027-01-15T08:00:00Z",
    "replicas": 4,
    "previousReplicas": 2,
    "concurrencyCap": 24,
    "applied": True,
    "reason": "14.2 req/s needs 4 replicas at cap 24; 2 → 4 replicas",
}


def test_a_decision_is_one_json_line_with_its_fields(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    handler._log_decision(ServiceRef("chat", "team-a"), RECORD, "auto")
    handler._log_decision(ServiceRef("chat", "team-a"), None, "auto")  # nothing new: no line
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["logger"] == "tokenscale.handlers.autoscale"
    assert (entry["namespace"], entry["name"]) == ("team-a", "chat")
    assert entry["message"] == f"{RECORD['reason']} (auto mode, replicas 4, cap 24)"
    assert (entry["replicas"], entry["previousReplicas"], entry["concurrencyCap"]) == (4, 2, 24)
    assert entry["mode"] == "auto" and entry["reason"] == RECORD["reason"]
    assert entry["time"].endswith("Z")


def test_text_lines_name_the_service(stream: io.StringIO) -> None:
    logs.configure("info", "text", stream)
    handler._log_decision(ServiceRef("chat", "team-a"), RECORD, "advisory")
    text = stream.getvalue()
    assert "INFO tokenscale.handlers.autoscale: [team-a/chat] 14.2 req/s needs 4 replicas" in text
    assert text.count("\n") == 1


def test_kopf_handler_successes_only_at_debug(stream: io.StringIO) -> None:
    kopf_log = logging.getLogger("kopf.objects")
    logs.configure("info", "text", stream)
    kopf_log.info("Handler 'on_pod' succeeded.")
    kopf_log.info("Creation is processed: 1 succeeded; 0 failed.")
    assert "on_pod" not in stream.getvalue() and "Creation is processed" in stream.getvalue()
    logs.configure("debug", "text", stream)
    kopf_log.info("Handler 'on_pod' succeeded.")
    assert "Handler 'on_pod' succeeded." in stream.getvalue()


def test_warning_level_hides_info(stream: io.StringIO) -> None:
    logs.configure("warning", "json", stream)
    logging.getLogger("tokenscale.test").info("quiet")
    logging.getLogger("tokenscale.test").warning("loud")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_a_failure_is_logged_when_it_starts_changes_and_ends(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    states = logs.ErrorStates(logging.getLogger("tokenscale.test"))
    for _ in range(5):  # five ticks of the same failure
        states.failed(("ns", "a"), KeyError("spec"), "tick failed for %s/%s", "ns", "a")
    states.failed(("ns", "a"), ValueError("bad"), "tick failed for %s/%s", "ns", "a")
    states.recovered(("ns", "a"), "tick for %s/%s works again", "ns", "a")
    states.recovered(("ns", "a"), "tick for %s/%s works again", "ns", "a")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["message"]) for e in entries] == [
        ("error", "tick failed for ns/a"),
        ("error", "tick failed for ns/a"),
        ("info", "tick for ns/a works again"),
    ]
    assert "KeyError" in entries[0]["exception"] and "ValueError" in entries[1]["exception"]


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ((None, None), {}, ("info", "text")),
        (
            (None, None),
            {"TOKENSCALE_LOG_LEVEL": "debug", "TOKENSCALE_LOG_FORMAT": "json"},
            ("debug", "json"),
        ),
        (
            ("warning", "text"),
            {"TOKENSCALE_LOG_LEVEL": "debug", "TOKENSCALE_LOG_FORMAT": "json"},
            ("warning", "text"),
        ),
    ],
)
def test_the_command_line_wins_over_the_environment(
    flags: tuple[str | None, str | None], env: dict[str, str], expected: tuple[str, str]
) -> None:
    chosen = LogSettings.resolve(*flags, env=env)
    assert (chosen.level, chosen.format) == expected


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match=r"TOKENSCALE_LOG_FORMAT='yaml' must be one of text, json"):
        LogSettings.resolve(env={"TOKENSCALE_LOG_FORMAT": "yaml"})


def test_run_takes_log_flags() -> None:
    args = build_parser().parse_args(["run", "--log-level", "error", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("error", "json")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--log-format", "yaml"])


def test_run_refuses_a_bad_log_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenscale.cli import main

    monkeypatch.setenv("TOKENSCALE_LOG_LEVEL", "loud")
    assert main(["run", "-n", "team-a"]) == 2
    assert capsys.readouterr().err == (
        "tokenscale run: TOKENSCALE_LOG_LEVEL='loud' must be one of debug, info, warning, error\n"
    )

"""What a person reads when Prometheus fails: each way it fails (refused, not found, timed out, an
HTTP status, not a query result) met for real on 127.0.0.1 and reduced to one short readable
cause; the log says so once per change of state, and urllib3 adds no retry warnings."""

from __future__ import annotations

import http.server
import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from tokenscale.adapters.prometheus import PrometheusSignals, PrometheusUnavailableError
from tokenscale.adapters.prometheus_errors import display_url
from tokenscale.domain.status import PrometheusProblem

PROMETHEUS_LOG = "tokenscale.adapters.prometheus"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's `status` and `body`."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(server.body)

    def log_message(self, *_: object) -> None:
        return


class _Server(http.server.ThreadingHTTPServer):
    status = 200
    body = b""


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join()


def failure(url: str, timeout_s: float = 5.0) -> PrometheusUnavailableError:
    with pytest.raises(PrometheusUnavailableError) as caught:
        PrometheusSignals(url, timeout_s=timeout_s).fetch()
    return caught.value


def readable(text: str) -> None:
    """No query, no URL encoding, no exception class names, one line."""
    assert "query=" not in text and "%28" not in text and "\n" not in text
    assert not re.search(r"Error|Exception|Traceback|HTTPConnectionPool", text), text


def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    caplog.set_level(logging.DEBUG)
    error = failure(url)
    assert error.outage.problem is PrometheusProblem.REFUSED
    assert str(error) == f"Prometheus at {url} did not answer (connection refused)"
    # Not retried: no urllib3 "Retrying (...) after connection broken" warning with the query.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == [PROMETHEUS_LOG]


def test_dns_failure_names_the_host() -> None:
    error = failure("http://prometheus.nowhere.invalid:9090")
    assert error.outage.problem is PrometheusProblem.DNS
    assert str(error) == (
        "Prometheus at http://prometheus.nowhere.invalid:9090 could not be found "
        "(DNS lookup of prometheus.nowhere.invalid failed)"
    )


def test_timeout_names_the_limit() -> None:
    # A socket that listens but never accepts: the connection opens, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        error = failure(url, timeout_s=0.2)
    assert error.outage.problem is PrometheusProblem.TIMEOUT
    assert str(error) == f"Prometheus at {url} did not answer within 0.2 s (timeout)"


@pytest.mark.parametrize(
    ("status", "body", "problem", "what"),
    [
        (
            503,
            b"overloaded",
            PrometheusProblem.HTTP_STATUS,
            "answered HTTP 503 Service Unavailable",
        ),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 7"}',
            PrometheusProblem.HTTP_STATUS,
            "answered HTTP 400 Bad Request",
        ),
        (
            200,
            b"<html>Grafana</html>",
            PrometheusProblem.BAD_RESPONSE,
            "answered with something that is not a Prometheus query result",
        ),
        (
            200,
            b'{"status":"success","data":{}}',
            PrometheusProblem.BAD_RESPONSE,
            "answered with something that is not a Prometheus query result",
        ),
    ],
)
def test_answers_that_are_not_results(
    server: _Server, status: int, body: bytes, problem: PrometheusProblem, what: str
) -> None:
    server.status, server.body = status, body
    port = server.server_address[1]
    # Credentials in the URL reach Prometheus but never a message.
    error = failure(f"http://reader:secret@127.0.0.1:{port}/")
    assert error.outage.problem is problem
    assert str(error) == f"Prometheus at http://127.0.0.1:{port} {what}"
    readable(str(error))


def test_the_log_says_it_once_per_change_with_details_at_debug(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=PROMETHEUS_LOG)
    server.status, server.body = 503, b"overloaded"
    source = PrometheusSignals(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=5)

    def lines(level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == PROMETHEUS_LOG and r.levelno == level
        ]

    for _ in range(3):  # three ticks of the same outage
        with pytest.raises(PrometheusUnavailableError):
            source.fetch()
    assert len(lines(logging.WARNING)) == 1
    details = [line for line in lines(logging.DEBUG) if "query failed" in line]
    assert len(details) == 1 and "503" in details[0] and "%28" not in details[0]
    server.status, server.body = 200, b'{"status":"success","data":{"result":[]}}'
    assert source.fetch() == {}
    assert source.fetch() == {}
    assert lines(logging.INFO) == [f"Prometheus at {source.shown_url} answers again"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@prom.monitoring:9090/", "http://prom.monitoring:9090"),
        ("https://prom.example/prometheus", "https://prom.example/prometheus"),
    ],
)
def test_display_url_drops_credentials(url: str, shown: str) -> None:
    assert display_url(url) == shown

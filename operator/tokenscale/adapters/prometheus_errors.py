"""Why a Prometheus query failed, in a few words: the exception chain that requests, urllib3 and
prometheus-api-client raise (a refused connection arrives as ConnectionError <- MaxRetryError <-
NewConnectionError <- ConnectionRefusedError, its text holding the URL-encoded query) reduced to
one `PrometheusProblem` and its fields. The full chain goes to the debug log, never to status."""

from __future__ import annotations

import http
import re
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from tokenscale.domain.status import MetricsOutage, PrometheusProblem

_TIMEOUTS = (
    requests.exceptions.Timeout,
    urllib3.exceptions.ReadTimeoutError,
    socket.timeout,
)
_STATUS_TEXT = (
    re.compile(r"HTTP Status Code (\d{3})"),  # prometheus-api-client on a non-200 answer
    re.compile(r"too many (\d{3}) error responses"),  # urllib3 after the 5xx retries
)


def display_url(url: str) -> str:
    """The URL as a person should see it: no credentials, no trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, urllib3's `reason` and
    requests' wrapped first argument. Bounded: a chain is a handful deep."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 16:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        wrapped = [a for a in current.args if isinstance(a, BaseException)]
        for inner in (current.__cause__, current.__context__, reason, *wrapped):
            if isinstance(inner, BaseException):
                todo.append(inner)


def _http_status(chain: list[BaseException]) -> str | None:
    for exc in chain:
        for pattern in _STATUS_TEXT:
            found = pattern.search(str(exc))
            if found:
                code = int(found.group(1))
                try:
                    return f"{code} {http.HTTPStatus(code).phrase}"
                except ValueError:
                    return str(code)
    return None


def _connection_cause(chain: list[BaseException]) -> str:
    if any(isinstance(e, ssl.SSLError | requests.exceptions.SSLError) for e in chain):
        return "TLS handshake failed"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection reset"
    if any(isinstance(e, requests.exceptions.ConnectionError) for e in chain):
        return "connection failed"
    return type(chain[0]).__name__


def classify(exc: BaseException, url: str, timeout_s: float) -> MetricsOutage:
    """The problem behind a failed query (checked most specific first: urllib3's connection
    errors are subclasses of its timeout error, so a refusal must be recognised before a
    timeout)."""
    chain = list(_chain(exc))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return MetricsOutage(url, PrometheusProblem.REFUSED)
    if any(isinstance(e, socket.gaierror | urllib3.exceptions.NameResolutionError) for e in chain):
        host = urlsplit(url).hostname or url
        return MetricsOutage(url, PrometheusProblem.DNS, (("host", host),))
    if any(isinstance(e, _TIMEOUTS) for e in chain):
        return MetricsOutage(url, PrometheusProblem.TIMEOUT, (("timeout", f"{timeout_s:g}"),))
    status = _http_status(chain)
    if status is not None:
        return MetricsOutage(url, PrometheusProblem.HTTP_STATUS, (("status", status),))
    if any(isinstance(e, ValueError | KeyError | TypeError) for e in chain):
        return MetricsOutage(url, PrometheusProblem.BAD_RESPONSE)
    cause = _connection_cause(chain)
    return MetricsOutage(url, PrometheusProblem.UNREACHABLE, (("cause", cause),))

"""A real S3 endpoint for tests, and a proxy in front of it that cuts downloads short.

    with moto_server() as endpoint:
        with CuttingProxy(endpoint, cut_path_suffix="model.safetensors", cuts=1) as proxy:
            ...  # point AWS_ENDPOINT_URL at proxy.url; proxy.gets("/bucket/key") counts GETs

moto runs as its own process (`python -m moto.server`), so the client under test speaks real HTTP
to it. The proxy is stdlib only: for the first `cuts` GET responses whose path ends with
`cut_path_suffix` it sends the status line, the headers (with the full Content-Length) and half of
the body, then closes the connection, as a network that drops mid-transfer does.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO

# Credentials moto accepts; any value works, but the client must send some.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

# Connection-level headers a proxy must not pass on (RFC 9110 7.6.1), plus Expect: the proxy has
# already answered 100-continue itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


@contextlib.contextmanager
def moto_server(host: str = "127.0.0.1", start_timeout_s: float = 60.0) -> Iterator[str]:
    """Start `python -m moto.server` on a free port and yield its endpoint URL.

    `host` is the address it listens on (0.0.0.0 for a cluster to reach it); the URL always names
    127.0.0.1 for a listener on every address.
    """
    port = free_port(host)
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(proc, url, output, start_timeout_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for(proc: subprocess.Popen[bytes], url: str, output: IO[bytes], s: float) -> None:
    deadline = time.monotonic() + s
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            output.seek(0)
            tail = output.read()[-2000:].decode(errors="replace")
            state = f"exited {proc.returncode}" if proc.poll() is not None else f"silent {s:g} s"
            raise RuntimeError(f"moto server at {url} {state}: {tail}")
        time.sleep(0.1)


class CuttingProxy:
    """An HTTP proxy to `upstream` that cuts the first `cuts` GET responses whose path ends with
    `cut_path_suffix` after half of their body, and counts every request by path."""

    def __init__(
        self,
        upstream: str,
        *,
        cut_path_suffix: str | None = None,
        cuts: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self._upstream = (parsed.hostname, parsed.port or 80)
        self._suffix = cut_path_suffix
        self._cuts_left = cuts
        self._lock = threading.Lock()
        self._gets: Counter[str] = Counter()
        self._requests = 0
        self._server = _ProxyServer((host, 0), _ProxyHandler)
        self._server.proxy = self
        port = self._server.server_address[1]
        self.url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CuttingProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def gets(self, path: str) -> int:
        """GET requests seen for `path` (unquoted, without the query: "/bucket/key")."""
        with self._lock:
            return self._gets[path]

    @property
    def requests(self) -> int:
        """Every request seen, of any method and path."""
        with self._lock:
            return self._requests

    @property
    def cuts_left(self) -> int:
        with self._lock:
            return self._cuts_left

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self._requests += 1
            if method == "GET":
                self._gets[path] += 1

    def take_cut(self, path: str) -> bool:
        """True, once per configured cut, for a successful GET of a matching path."""
        with self._lock:
            if self._suffix is None or not path.endswith(self._suffix) or self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            return True

    def fetch(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        # The Host header goes through unchanged: the client signed it.
        conn = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()


class _ProxyServer(ThreadingHTTPServer):
    # Handler threads may sit in keep-alive reads: never wait for them on close.
    daemon_threads = True
    proxy: CuttingProxy


class _ProxyHandler(BaseHTTPRequestHandler):
    # Keep-alive like a real endpoint: botocore reuses its connections.
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _ProxyServer

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def log_message(self, *_: object) -> None:
        pass  # quiet: tests read the counters instead

    def _forward(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        self.server.proxy.record(self.command, path)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Re-framing a chunked (possibly aws-chunked, signed) body would change what the
            # client signed; upload straight to the endpoint instead.
            self.send_error(501, "chunked request bodies are not proxied")
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, reason, out_headers, data = self.server.proxy.fetch(
                self.command, self.path, body, headers
            )
        except OSError as err:
            self.send_error(502, f"upstream: {err}")
            return
        self._send_head(status, reason, out_headers, len(data))
        if self.command == "GET" and status == 200 and self.server.proxy.take_cut(path):
            self._send_half_and_hang_up(data)
        else:
            self.wfile.write(data)

    def _send_head(self, status: int, reason: str, headers: list[tuple[str, str]], n: int) -> None:
        self.send_response(status, reason)
        announced = None
        for name, value in headers:
            if name.lower() == "content-length":
                announced = value
            elif name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        # HEAD carries the object's length without its body: pass the upstream's on.
        if self.command == "HEAD" and announced is not None:
            self.send_header("Content-Length", announced)
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()

    def _send_half_and_hang_up(self, data: bytes) -> None:
        """The full length was announced; half arrives, then the connection drops."""
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

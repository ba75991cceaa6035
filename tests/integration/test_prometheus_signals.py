"""The Prometheus adapter against a real Prometheus server scraping a real worker (gateway +
simulator engine): the metric names and labels tokenscale queries are the ones workers export,
a hostile service name cannot change a query, and a tick costs the same five queries."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from openai import OpenAI

from tests.conftest import minimal_spec
from tests.tools import running_prometheus, wait_http, write_scrape_config
from tokenscale.adapters.prometheus import PrometheusSignals, PrometheusUnavailableError
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain.autoscale import tick_status
from tokenscale.domain.capacity import Plan, plan
from tokenscale.domain.observation import Decision, Observation, ScalerState
from tokenscale.domain.scaling import decide
from tokenscale.domain.scaling_constants import for_window
from tokenscale.domain.signals import ServiceSignals, WorkloadFacts, to_observation
from tokenscale.domain.slo_reach import share_above

pytestmark = pytest.mark.integration
SERVICE = "tokenscale_io_service"
HOSTILE = 'chat"} or vector(1) or {x="\\'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    tuning = tmp_path_factory.mktemp("tuning") / "tuning.json"
    tuning.write_text(json.dumps({"concurrencyCap": 8, "queueLimit": 64}))
    cmd = [
        sys.executable,
        "-m",
        "tokenscale_worker.cli",
        "serve",
        "--engine",
        "sim",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100-80gb",
        "--port",
        str(port),
        "--engine-port",
        "0",
        "--tuning",
        str(tuning),
        "--time-scale",
        "0.2",
        "--served-model-name",
        "chat",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", deadline_s=30)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus(worker: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prometheus")
    labels = {"namespace": "team-a", "tokenscale_io_service": HOSTILE}
    write_scrape_config(work, f"127.0.0.1:{worker}", labels)
    with running_prometheus(work, free_port()) as url:
        yield url


def steady_traffic(port: int, stop: threading.Event) -> None:
    """Requests until told to stop: rates need traffic spanning at least two scrapes."""
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    for _ in range(2000):  # bounded even if the test never sets `stop`
        if stop.is_set():
            return
        client.completions.create(model="chat", prompt="hello " * 200, max_tokens=20)


def test_signals_from_a_real_worker(worker: int, prometheus: str) -> None:
    stop = threading.Event()
    sender = threading.Thread(target=steady_traffic, args=(worker, stop), daemon=True)
    sender.start()
    try:
        signals = poll_signals(prometheus)
    finally:
        stop.set()
        sender.join(timeout=30)
    check_signals(signals)


def poll_signals(prometheus: str) -> dict[tuple[str, str], ServiceSignals]:
    source = PrometheusSignals(prometheus, window="30s", timeout_s=5.0)  # as settings hold it
    key = ("team-a", HOSTILE)
    deadline = time.monotonic() + 60
    signals: dict[tuple[str, str], ServiceSignals] = {}
    while time.monotonic() < deadline:
        signals = source.fetch()
        found = signals.get(key)
        # The window's mean in flight steps at the scrape interval (5 s): a series younger
        # than the last step has no point in it yet, and its first points may be the idle
        # worker's, scraped before the traffic began (a mean of 0).
        if (
            found
            and found.ttft_buckets
            and found.rates.get("requests")
            and found.rates.get("arrivals_recent")
            and found.gauges.get("in_flight_mean", 0.0) > 0
        ):
            break
        time.sleep(1)
    before = source.queries_sent
    source.fetch()
    assert source.queries_sent - before == 5
    return signals


def check_signals(signals: dict[tuple[str, str], ServiceSignals]) -> None:
    key = ("team-a", HOSTILE)
    assert key in signals, f"service not found; got {list(signals)}"
    assert len(signals) == 1  # the hostile name did not widen or change any query
    obs = to_observation(signals[key], 95, WorkloadFacts(1, 1))
    assert obs.ttft_s is not None and 0 < obs.ttft_s < 5
    assert obs.itl_s is not None and 0 < obs.itl_s < 1
    assert obs.arrival_rate is not None and obs.arrival_rate > 0
    # The last tick's demand rides on the rates query. The window may still hold the idle time
    # before the traffic began, the last 15 s only traffic: as much or more, give or take a
    # request in a scrape.
    recent = obs.arrival_rate_recent
    assert recent is not None and recent >= 0.5 * obs.arrival_rate
    assert obs.prompt_tokens == pytest.approx(200, rel=0.2)
    assert obs.output_tokens == pytest.approx(20, rel=0.2)
    assert signals[key].gauges.get("cap") == 8
    assert signals[key].gauges.get("targets_up") == 1
    # One client sending back to back: one request in flight at most, nearly always one.
    assert obs.in_flight_mean is not None and 0 < obs.in_flight_mean <= 1.0
    # The sample time is Prometheus's scrape time (every second here), not the query's.
    sampled_at = signals[key].sampled_at
    assert sampled_at is not None and 0 <= time.time() - sampled_at < 10
    assert obs.sampled_at == sampled_at
    # The prompt-length buckets ride on the E2E query (still five queries) and are kept apart
    # from the latency buckets: every prompt here is ~200 tokens.
    prompts = signals[key].prompt_buckets
    assert prompts and share_above(prompts, 100) == pytest.approx(1.0)
    assert share_above(prompts, 1000) == pytest.approx(0.0)
    latency_bounds = {le for le, _ in signals[key].e2e_buckets}
    assert 200.0 not in latency_bounds and 0.3 in latency_bounds  # vLLM's latency buckets only


def test_prometheus_down_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    source = PrometheusSignals(url, timeout_s=1)
    with pytest.raises(PrometheusUnavailableError) as caught:
        source.fetch()
    assert str(caught.value) == f"Prometheus at {url} did not answer (connection refused)"
    assert metrics_message(caught.value, replicas=2) == (
        f"Prometheus at {url} did not answer (connection refused); replicas held at 2; check "
        "that Prometheus runs and prometheus.url points at it"
    )


def metrics_message(error: PrometheusUnavailableError, replicas: int) -> str:
    """The MetricsAvailable message a service's status would carry after this failure."""
    spec = InferenceServiceSpec.model_validate(minimal_spec())
    decision = Decision(
        replicas, 8, "metrics missing; hold", replicas, False, "auto", ScalerState()
    )
    patch = tick_status(spec, {}, decision, Observation(), time.time(), 1, error.outage)
    return str(next(c for c in patch["conditions"] if c["type"] == "MetricsAvailable")["message"])


def test_a_real_prometheus_that_stops_and_returns(tmp_path: Path) -> None:
    """Answers, is stopped (refused: one readable message, no query, no retry warnings), is
    started again on the same port (answers again)."""
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1s}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    source = PrometheusSignals(url, timeout_s=5)
    with running_prometheus(tmp_path, port):
        assert source.fetch() == {}  # no workers: an answer with no series
    with pytest.raises(PrometheusUnavailableError) as caught:
        source.fetch()
    message = metrics_message(caught.value, replicas=3)
    assert message.startswith(f"Prometheus at {url} did not answer (connection refused); ")
    assert "query" not in message and "%" not in message and "Error" not in message
    with running_prometheus(tmp_path, port):
        assert source.fetch() == {}
    assert source.outage is None


@contextlib.contextmanager
def exporter(page: str) -> Iterator[int]:
    """A metrics endpoint serving `page` as it is; yields its port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_samples_older_than_the_window_make_decide_hold(tmp_path: Path) -> None:
    """A scrape that keeps returning one old sample (its exposition timestamp 90 s back, as a
    Prometheus that stopped scraping keeps answering with its last values): the query still
    returns the gauge, its own time says it is older than the 30 s window, and decide() holds
    instead of reading "3 running, no arrivals" as load gone."""
    stamp = round(time.time() - 90.0, 3)
    page = f'vllm:num_requests_running{{model_name="chat"}} 3 {round(stamp * 1000)}\n'
    key = ("team-a", "chat")
    with exporter(page) as port:
        write_scrape_config(tmp_path, f"127.0.0.1:{port}", {"namespace": key[0], SERVICE: key[1]})
        with running_prometheus(tmp_path, free_port()) as url:
            source = PrometheusSignals(url, window="30s", timeout_s=5.0)
            found = poll_until(lambda: source.fetch().get(key), deadline_s=30)
    assert found.gauges.get("running") == 3 and found.rates == {}
    assert found.sampled_at == pytest.approx(stamp, abs=0.001)
    spec = InferenceServiceSpec.model_validate(minimal_spec())
    planned = plan(spec)
    assert isinstance(planned, Plan)
    observation = to_observation(found, 95, WorkloadFacts(ready_replicas=2, current_replicas=2))
    decision = decide(
        spec, planned, observation, ScalerState(), time.time(), constants=for_window(30.0)
    )
    assert decision.replicas == 2
    assert decision.reason.startswith("metrics stale (")


def poll_until(read: Callable[[], ServiceSignals | None], deadline_s: float) -> ServiceSignals:
    """The first non-empty answer of `read` within the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        found = read()
        if found is not None:
            return found
        assert time.monotonic() < end, f"no answer within {deadline_s} s"
        time.sleep(0.5)


def test_the_window_mean_counts_running_waiting_and_queued(tmp_path: Path) -> None:
    """An engine's running and waiting gauges carry the same labels (vLLM's `model_name` and
    `engine`): the mean in flight must add both, and the gateway's queue, not keep one of them."""
    page = (
        'vllm:num_requests_running{model_name="chat",engine="0"} 3\n'
        'vllm:num_requests_waiting{model_name="chat",engine="0"} 2\n'
        "tokenscale_gateway_queue_length 1\n"
    )
    key = ("team-a", "chat")

    def with_mean() -> ServiceSignals | None:
        found = source.fetch().get(key)
        return found if found and "in_flight_mean" in found.gauges else None

    with exporter(page) as port:
        write_scrape_config(tmp_path, f"127.0.0.1:{port}", {"namespace": key[0], SERVICE: key[1]})
        with running_prometheus(tmp_path, free_port()) as url:
            source = PrometheusSignals(url, window="30s", timeout_s=5.0)
            found = poll_until(with_mean, deadline_s=30)
    assert found.gauges["running"] == 3 and found.gauges["waiting"] == 2
    assert found.gauges["gateway_queue"] == 1
    assert found.gauges["in_flight_mean"] == 6

"""Fixtures of the autoscaling scenarios: one Prometheus server and one operator (autoscale loop
on) for the session; per scenario a namespace, its fleet emulator and cleanup.

Namespaces are `as-<session>-<scenario>-<n>` and the operator watches `as-<session>-*` only:
other suites, and another run of this one, may share the cluster, and two operators (each
with its own Prometheus) deciding for one service would overwrite each other's status."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2e.autoscale.helpers import FleetProcess, Service, Timeline
from e2e.autoscale.operator import AutoscaleOperator, ensure_chart
from e2e.fleet.loadgen import BackgroundLoad, Phase
from e2e.fleet.prometheus import PrometheusServer
from e2e.harness import Cluster, Operator, wait_for

SESSION = f"as-{secrets.token_hex(2)}"
SCENARIO_NAMESPACES = f"{SESSION}-*"
TICK_SECONDS = 5
WINDOW = "30s"


@pytest.fixture(scope="session")
def as_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs of the operator, Prometheus, fleet and workers; pytest keeps the last runs'."""
    return tmp_path_factory.mktemp("autoscale")


@pytest.fixture(scope="session")
def prometheus(as_workdir: Path) -> Iterator[PrometheusServer]:
    server = PrometheusServer(as_workdir / "prometheus")
    server.start()
    yield server
    server.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "time_scale(x): the scenario's simulated GPUs run x times slower than the catalog says",
    )
    config.addinivalue_line(
        "markers", "engine(name): the scenario's workers run `sim` (default) or real `vllm` (CPU)"
    )


def autoscale_env(prometheus: PrometheusServer) -> dict[str, str]:
    return {
        "TOKENSCALE_PROMETHEUS_URL": prometheus.url,
        "TOKENSCALE_PROMETHEUS_WINDOW": WINDOW,
        "TOKENSCALE_PROMETHEUS_TIMEOUT_SECONDS": "3",
        "TOKENSCALE_AUTOSCALE_INTERVAL_SECONDS": str(TICK_SECONDS),
    }


@pytest.fixture(scope="session")
def as_operator(
    cluster: Cluster, prometheus: PrometheusServer, as_workdir: Path
) -> Iterator[Operator]:
    ensure_chart(cluster)
    op = AutoscaleOperator(
        cluster,
        as_workdir / "operator.log",
        namespaces=(SCENARIO_NAMESPACES,),
        extra_env=autoscale_env(prometheus),
    )
    op.start()
    yield op
    op.stop()


@dataclass
class Scenario:
    """One scenario's namespace, fleet and load generators; cleaned up by the fixture."""

    cluster: Cluster
    namespace: str
    fleet: FleetProcess
    operator: Operator
    prometheus: PrometheusServer
    loads: list[BackgroundLoad] = field(default_factory=list)
    timelines: list[Timeline] = field(default_factory=list)

    def service(self, name: str = "chat") -> Service:
        return Service(self.cluster, self.namespace, name)

    def timeline(self, name: str = "chat") -> Timeline:
        timeline = Timeline(self.service(name)).start()
        self.timelines.append(timeline)
        return timeline

    def load(self, url: str, **options: object) -> BackgroundLoad:
        load = BackgroundLoad(url, **options)
        self.loads.append(load)
        return load

    def start_load(self, phase: Phase, name: str = "chat") -> BackgroundLoad:
        """Send `phase` to the service's front; wait until the operator reads it."""
        svc = self.service(name)
        load = self.load(self.fleet.front(name))
        load.start(phase)

        def sees_traffic() -> bool:
            obs = svc.status().get("observed") or {}
            rate = obs.get("arrivalRate") or 0
            return bool(obs.get("ttftSeconds") and rate >= 0.6 * max(phase.rate, 0.1))

        wait_for(f"the operator to read the {phase.name} load", sees_traffic, timeout=90, every=1)
        return load


def report(sc: Scenario) -> None:
    """Every service's decisions and conditions, printed (pytest shows them on failure)."""
    for timeline in sc.timelines:
        timeline.stop()
        print(f"\n--- {sc.namespace}/{timeline.svc.name} every decision seen:")
        for d in timeline.history():
            print(
                f"  {d['time']} {d['previousReplicas']}->{d['replicas']} cap {d['concurrencyCap']}"
                f" applied={d['applied']}: {d['reason']}"
            )
    for item in sc.cluster.items("inferenceservices", sc.namespace):
        status = item.get("status") or {}
        print(f"\n--- {sc.namespace}/{item['metadata']['name']} decisions:")
        for d in status.get("lastDecisions") or []:
            print(
                f"  {d['time']} {d['previousReplicas']}->{d['replicas']} cap {d['concurrencyCap']}"
                f" applied={d['applied']}: {d['reason']}"
            )
        for c in status.get("conditions") or []:
            print(f"  {c['type']}={c['status']} {c.get('reason')}: {c.get('message')}")
        print(f"  autoscaler: {status.get('autoscaler')}")
    # What a failure that never got as far as a decision needs: did the operator see the
    # service, did the fleet start its workers.
    log = sc.operator.log_path.read_text(errors="replace") if sc.operator.log_path.exists() else ""
    about = [line for line in log.splitlines() if sc.namespace in line]
    print(f"\n--- operator log lines about {sc.namespace} (last 30 of {len(about)}):")
    print("\n".join(about[-30:]))
    print(f"\n--- fleet log (last 30 lines):\n{sc.fleet.log_tail(30)}")


@pytest.fixture
def scenario(
    cluster: Cluster,
    as_operator: Operator,
    prometheus: PrometheusServer,
    as_workdir: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Scenario]:
    short = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:24]
    namespace = cluster.new_namespace(f"{SESSION}-" + short.rstrip("-"))
    marker = request.node.get_closest_marker("time_scale")
    time_scale = float(marker.args[0]) if marker else 1.0
    engine = request.node.get_closest_marker("engine")
    fleet = FleetProcess(
        cluster,
        namespace,
        as_workdir / namespace,
        prometheus.sd_dir,
        time_scale=time_scale,
        engine=engine.args[0] if engine else "sim",
    )
    fleet.start()
    sc = Scenario(cluster, namespace, fleet, as_operator, prometheus)
    try:
        yield sc
    finally:
        cleanup(sc, as_operator, prometheus)


def cleanup(sc: Scenario, operator: Operator, prometheus: PrometheusServer) -> None:
    """Every step runs even when one before it fails; the first failure is raised at the end."""
    steps: list[Callable[[], object]] = [lambda: report(sc)]
    steps += [load.stop for load in sc.loads]
    # A scenario that stopped the operator or Prometheus must not leave the next without.
    steps.append(lambda: operator.proc is None or operator.proc.poll() is None or operator.start())
    steps.append(lambda: prometheus.ready() or prometheus.start())
    steps.append(lambda: sc.cluster.delete_namespace(sc.namespace))
    steps.append(
        lambda: wait_for("workers stopped", lambda: not sc.fleet.state().get("workers"), 150)
    )
    steps.append(sc.fleet.stop)
    errors: list[BaseException] = []
    for step in steps:
        try:
            step()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]

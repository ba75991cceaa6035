"""e2e fixtures: a real local cluster (or KUBECONFIG with TOKENSCALE_E2E_EXISTING_CLUSTER=1), the
chart installed with Helm, and the operator as a local process under the chart's ServiceAccount."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import RELEASE, ROOT, SYSTEM_NAMESPACE, Cluster, Operator, cluster_env, wait_for

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if os.environ.get("TOKENSCALE_E2E_EXISTING_CLUSTER") != "1":
        # Builds on a cold cache (printing progress), starts, or just checks a running cluster.
        subprocess.run(["bash", str(ROOT / "e2e" / "cluster" / "up.sh")], check=True)
    cluster = Cluster(cluster_env())
    swept = cluster.sweep_abandoned_namespaces()
    if swept:
        print(f"deleting {len(swept)} namespaces left by interrupted runs: {', '.join(swept)}")
    return cluster


def install_chart(cluster: Cluster, *extra: str) -> None:
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(ROOT / "charts" / "tokenscale"),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--create-namespace",
        # The operator runs as a local process in e2e (no images here): no operator pod.
        "--set",
        "replicaCount=0",
        "--wait",
        "--timeout",
        "2m",
        *extra,
    )
    # Helm returns once the CRD is Established, but the API server builds the watch cache of a
    # new resource after that and answers 429 "storage is (re)initializing" meanwhile: an
    # operator started now would begin behind a retry. Listing succeeds once it serves.
    wait_for(
        "the API server to serve InferenceServices",
        lambda: (
            cluster.kubectl("get", "inferenceservices", "-A", "-o", "name", check=False).returncode
            == 0
        ),
        timeout=60,
    )


@pytest.fixture(scope="session")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    install_chart(cluster)
    log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    # Lifecycle suites measure lifecycle writes alone: the autoscale loop is off here and has its
    # own suite (test_autoscale*.py) with Prometheus and the fleet emulator.
    proc = Operator(cluster, log, extra_env={"TOKENSCALE_AUTOSCALE": "off"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    short = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:30]
    name = cluster.new_namespace("lc-" + short.rstrip("-"))
    yield name
    cluster.delete_namespace(name)

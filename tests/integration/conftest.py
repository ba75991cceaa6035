"""Fixtures for the real-API-server tier: one kube-apiserver + etcd per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import apiserver
from tests.apiserver import ControlPlane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A fresh API server with the generated CRDs (crds/*.yaml) and a PodMonitor CRD installed,
    as on a cluster that runs the Prometheus operator."""
    with apiserver.control_plane(tmp_path_factory.mktemp("apiserver")) as plane:
        crds = [*apiserver.project_crds(), apiserver.PODMONITOR_CRD]
        apiserver.install_crds(plane.api_client(), crds)
        yield plane

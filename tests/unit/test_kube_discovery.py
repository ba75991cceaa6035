"""Kube's use of the dynamic client's discovery: serialized across threads, and a missing kind
is looked up once per TTL rather than on every reconcile."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tokenscale.adapters import kube as kube_module
from tokenscale.adapters.kube import Kube


class FakeResources:
    """Counts lookups and fails if two threads are inside at once."""

    def __init__(self) -> None:
        self.lookups = 0
        self.inside = 0
        self.overlapped = False

    def get(self, api_version: str, kind: str) -> Any:
        self.inside += 1
        self.overlapped |= self.inside > 1
        self.lookups += 1
        time.sleep(0.001)
        self.inside -= 1
        if kind == "PodMonitor":
            raise LookupError("No matches found")
        return object()


def fake_kube() -> tuple[Kube, FakeResources]:
    kube = Kube.__new__(Kube)
    resources = FakeResources()
    kube.dynamic = type("Dyn", (), {"resources": resources})()
    kube._discovery = threading.Lock()
    kube._has_resource = {}
    return kube, resources


def test_a_missing_kind_is_looked_up_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    kube, resources = fake_kube()
    clock = [1000.0]
    monkeypatch.setattr(kube_module.time, "monotonic", lambda: clock[0])
    assert not any(kube.has_resource("monitoring.coreos.com/v1", "PodMonitor") for _ in range(50))
    assert resources.lookups == 1
    clock[0] += kube_module.HAS_RESOURCE_TTL_S
    assert not kube.has_resource("monitoring.coreos.com/v1", "PodMonitor")
    assert resources.lookups == 2


def test_discovery_lookups_never_overlap() -> None:
    kube, resources = fake_kube()
    threads = [
        threading.Thread(target=lambda: [kube._resource("v1", "ConfigMap") for _ in range(20)])
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert resources.lookups == 160 and not resources.overlapped

"""The fleet emulator's local stand-in for a container: which words are paths in the pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e.fleet import containers
from e2e.fleet.cluster import ClusterView


def test_the_interpreter_is_not_read_as_a_path_in_the_pods_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI checks the project out under /tmp; the fill pod mounts an emptyDir at /tmp. The
    pod's own arguments under /tmp are the emptyDir; the local interpreter stays itself (three
    cold CI runs failed here: the interpreter became a path inside the emptyDir, and no fill ever
    started)."""
    python = "/tmp/ci-checkout/.venv/bin/python3"
    monkeypatch.setitem(
        containers.IMAGE_COMMANDS, "tokenscale-worker", [python, "-m", "tokenscale_worker.cli"]
    )
    pod: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": "fill-1"},
        "spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]},
    }
    container = {
        "command": ["tokenscale-worker", "fill"],
        "args": ["--source", "s3://b/m", "--scratch", "/tmp/work"],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "env": [{"name": "HOME", "value": "/tmp"}],
    }
    view: ClusterView = None  # type: ignore[assignment]  # no claim or Secret to look up
    local = containers.local_container(view, pod, container, tmp_path)
    scratch = tmp_path / "tmp"
    assert local.argv == [
        python, "-m", "tokenscale_worker.cli", "fill",
        "--source", "s3://b/m", "--scratch", f"{scratch}/work",
    ]  # fmt: skip
    assert local.env == {"HOME": str(scratch)}

"""Where the tools `make setup` installs live. Tests never install or build: a missing tool fails
the test with the command that installs it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_SH = ROOT / "e2e" / "cluster" / "build.sh"
VLLM_ENV_SH = ROOT / "worker_image" / "scripts" / "vllm-env.sh"
SETUP_HINT = "run `make setup` (it installs every tool the tests use, once)"


def cluster_tool(name: str) -> str:
    """Path of a binary build.sh caches (kubectl, helm, prometheus, ...); fails when not built."""
    out = subprocess.run(
        ["bash", str(BUILD_SH), "--print"], capture_output=True, text=True, check=True
    ).stdout
    paths = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    path = paths.get(name)
    if path is None:
        raise KeyError(f"build.sh knows no tool {name!r}: {sorted(paths)}")
    if not Path(path).is_file():
        pytest.fail(f"{name} is not installed at {path}: {SETUP_HINT}", pytrace=False)
    return path


def vllm_python() -> str:
    """The python of the cached real-vLLM environment; fails when not built."""
    check = subprocess.run(
        ["bash", str(VLLM_ENV_SH), "--check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        pytest.fail(f"{check.stderr.strip()}: {SETUP_HINT}", pytrace=False)
    return subprocess.run(
        ["bash", str(VLLM_ENV_SH), "--print"], capture_output=True, text=True, check=True
    ).stdout.strip()


TINY_MODEL_PY = ROOT / "worker_image" / "scripts" / "tiny_model.py"
TINY_SERVED = "tiny-llama"
# The tiny model as a user declares it in spec.model: a PVC-held checkpoint (claim `models`, which
# the cpu-test engine profile resolves under the models dir) with its shape spelled out.
TINY_MODEL_SPEC: dict[str, Any] = {
    "source": "pvc://models/tiny-llama",
    "servedName": TINY_SERVED,
    "maxModelLen": 512,
    "parameters": {
        "parametersBillions": 0.0004,
        "layers": 2,
        "hiddenSize": 128,
        "kvHeads": 2,
        "headDim": 32,
    },
}


def tiny_model() -> str:
    """Directory of the tiny Llama model `make setup` builds; fails when missing or changed."""
    python = vllm_python()
    check = subprocess.run(
        [python, str(TINY_MODEL_PY), "--check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        pytest.fail(f"{check.stderr.strip()}: {SETUP_HINT}", pytrace=False)
    return subprocess.run(
        [python, str(TINY_MODEL_PY), "--print"], capture_output=True, text=True, check=True
    ).stdout.strip()


def write_scrape_config(work: Path, target: str, labels: dict[str, str]) -> None:
    """A Prometheus configuration under `work` scraping `target` (host:port) every second, with
    target labels as a cluster's PodMonitor would add them."""
    (work / "targets.json").write_text(json.dumps([{"targets": [target], "labels": labels}]))
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: workers\n    file_sd_configs:\n"
        f"      - files: ['{work}/targets.json']\n"
    )


def wait_http(url: str, deadline_s: float = 60) -> None:
    """Poll `url` until it answers; the last error at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def running_prometheus(work: Path, port: int) -> Iterator[str]:
    """The real Prometheus `make setup` installed, on `work/prometheus.yml`, listening on
    127.0.0.1:`port` until the block ends; yields its URL."""
    proc = subprocess.Popen(
        [
            cluster_tool("prometheus"),
            f"--config.file={work}/prometheus.yml",
            f"--storage.tsdb.path={work}/data",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WHEEL_VENVS_SH = ROOT / "hack" / "wheel-venvs.sh"


def wheel_venvs() -> Path:
    """The directory holding the clean per-image environments `make setup` builds
    (`operator/`, `worker/`); fails when they are missing or built for other pyproject files."""
    check = subprocess.run(
        ["bash", str(WHEEL_VENVS_SH), "--check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        pytest.fail(f"{check.stderr.strip()}: {SETUP_HINT}", pytrace=False)
    out = subprocess.run(
        ["bash", str(WHEEL_VENVS_SH), "--print"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())

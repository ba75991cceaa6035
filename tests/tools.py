"""Where the tools `make setup` installs live. Tests never install or build: a missing tool fails
the test with the command that installs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

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

"""The worker image's Dockerfile, checked without building it: pinned base, non-root user and the
ENTRYPOINT the operator's Deployment relies on."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tokenscale_contract.interface import GATEWAY_PORT, WORKER_ENTRYPOINT

DOCKERFILE = Path(__file__).parents[2] / "worker_image" / "Dockerfile"
SCRIPT = Path(__file__).parents[2] / "worker_image" / "scripts" / "vllm-env.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_base_image_is_pinned_vllm_matching_the_contract_env() -> None:
    froms = [arg for word, arg in instructions() if word == "FROM"]
    assert len(froms) == 1
    image, _, tag = froms[0].partition(":")
    assert image == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"FROM must pin a release tag, not {tag!r}"
    # The test environment (contract test and real CPU engine) takes its version from this line.
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_VERSION", "TOKENSCALE_VLLM_VENV")}
    python = subprocess.run(
        ["bash", str(SCRIPT), "--print"], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert python.endswith(f"/vllm-{tag.removeprefix('v')}/bin/python"), python


def test_runs_as_non_root() -> None:
    users = [arg for word, arg in instructions() if word == "USER"]
    assert users, "no USER instruction: the image would run as root"
    assert users[-1] not in ("0", "root") and not users[-1].startswith(("0:", "root:"))


def test_entrypoint_is_the_shared_contract() -> None:
    entrypoints = [arg for word, arg in instructions() if word == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == WORKER_ENTRYPOINT  # JSON form: no shell in between


def test_exposes_the_gateway_port() -> None:
    assert str(GATEWAY_PORT) in [arg for word, arg in instructions() if word == "EXPOSE"]

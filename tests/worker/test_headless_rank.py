"""A worker rank of a multi-node group runs vLLM headless and no gateway: the real worker
process, with a stand-in `vllm` on PATH that records its argv (vLLM cannot join a two-node
rendezvous on this machine; tests/worker/test_vllm_contract.py parses the same argv with
vLLM's own parser)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tokenscale_contract.interface import CONFIG_ENV

pytestmark = pytest.mark.integration

FAKE_VLLM = """#!/bin/sh
printf '%s\\n' "$@" > "$ARGV_OUT"
trap 'exit 0' TERM
while :; do sleep 0.1; done
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < end, f"{path} never written"
        time.sleep(0.05)


def run_rank(tmp_path: Path, rank: str) -> tuple[subprocess.Popen[str], Path, int]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "vllm"
    fake.write_text(FAKE_VLLM)
    fake.chmod(0o755)
    argv_out = tmp_path / f"argv-{rank}"
    config = {"modelSource": "hf://meta-llama/Llama-3.1-405B-Instruct", "servedName": "huge",
              "tensorParallelSize": 8, "pipelineParallelSize": 2}  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ARGV_OUT": str(argv_out),
        CONFIG_ENV: json.dumps(config),
        "LWS_GROUP_SIZE": "2",
        "LWS_WORKER_INDEX": rank,
        "LWS_LEADER_ADDRESS": "huge-0.huge.ns",
    }
    port = free_port()
    worker = str(Path(sys.executable).with_name("tokenscale-worker"))
    proc = subprocess.Popen(
        [worker, "serve", "--engine", "vllm", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return proc, argv_out, port


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(120)
def test_a_worker_rank_runs_vllm_headless_without_a_gateway(tmp_path: Path) -> None:
    proc, argv_out, port = run_rank(tmp_path, "1")
    try:
        wait_for(argv_out)
        argv = argv_out.read_text().split()
        assert argv[0] == "serve" and "--headless" in argv
        assert argv[argv.index("--node-rank") + 1] == "1"
        time.sleep(1.0)  # the gateway would be listening by now
        assert not listening(port), "a headless rank opened the gateway port"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "headless rank of a multi-node group" in out


@pytest.mark.timeout(120)
def test_the_leader_rank_serves_through_the_gateway(tmp_path: Path) -> None:
    proc, argv_out, port = run_rank(tmp_path, "0")
    try:
        wait_for(argv_out)
        argv = argv_out.read_text().split()
        assert "--headless" not in argv and argv[argv.index("--node-rank") + 1] == "0"
        end = time.monotonic() + 30
        while not listening(port):
            assert time.monotonic() < end, "the leader's gateway never listened"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)

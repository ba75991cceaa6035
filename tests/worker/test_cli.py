"""The CLI's vLLM path: config to argv, and a real child process managed by the worker.

A stand-in `vllm` executable on PATH parses the same `serve` arguments and runs the simulator on
the port it was given, so the worker's process handling (start, proxy, exit code) runs for real.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.worker.conftest import free_port, wait_until_ready
from tokenscale_worker.cli import main

pytestmark = pytest.mark.integration

FAKE_VLLM = f"""#!{sys.executable}
import sys
args = sys.argv[1:]
assert args[0] == "serve", args
if "--fail" in args:
    sys.exit(3)
opts = dict(zip(args[1::2], args[2::2]))
from tokenscale_worker.cli import main
sys.exit(main(["sim", "--model", "llama-3.1-8b", "--host", opts["--host"], "--port", opts["--port"],
               "--served-model-name", opts["--served-model-name"]]))
"""


def config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "config.json"
    body = {"modelSource": "hf://meta-llama/Llama-3.1-8B-Instruct", "servedName": "chat",
            "port": free_port(), **extra}  # fmt: skip
    path.write_text(json.dumps(body))
    return path


def fake_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(FAKE_VLLM)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_args_prints_the_vllm_argv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["args", "--config", str(config(tmp_path))]) == 0
    argv = json.loads(capsys.readouterr().out)
    assert argv[:4] == ["vllm", "serve", "--model", "meta-llama/Llama-3.1-8B-Instruct"]


def test_bad_config_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, extraArgs=["--tensor-parallel-size", "2"])
    assert main(["args", "--config", str(path)]) == 2
    assert "spec.engine.extraArgs[0] sets --tensor-parallel-size" in capsys.readouterr().err


async def test_serve_runs_vllm_as_a_child_and_proxies_to_it(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tokenscale_worker.cli", "serve", "--config",
        str(config(tmp_path)), "--host", "127.0.0.1", "--port", str(port), "--tuning",
        str(tmp_path / "tuning.json"), env=fake_path(tmp_path),
    )  # fmt: skip
    try:
        await wait_until_ready(f"http://127.0.0.1:{port}/ready")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{port}/v1/completions",
                json={"model": "chat", "prompt": "a b", "max_tokens": 3},
            ) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["usage"]["completion_tokens"] == 3
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_engine_exit_code_becomes_the_workers(tmp_path: Path) -> None:
    path = config(tmp_path, extraArgs=["--fail"])
    result = subprocess.run(
        [sys.executable, "-m", "tokenscale_worker.cli", "serve", "--config", str(path),
         "--host", "127.0.0.1", "--port", str(free_port()), "--tuning", str(tmp_path / "t.json")],
        env=fake_path(tmp_path), timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3


def test_missing_vllm_is_explained(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tokenscale_worker.cli", "serve", "--config", str(config(tmp_path)),
         "--port", str(free_port()), "--tuning", str(tmp_path / "t.json")],
        env=env, timeout=60, check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'vllm' is not on PATH" in result.stderr

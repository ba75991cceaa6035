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
    err = capsys.readouterr().err
    assert err.startswith("tokenscale-worker: spec.engine.extraArgs[0]")
    assert "sets --tensor-parallel-size" in err


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


# -- hostile options: one line on stderr, exit 2, never a traceback -------------------------------

SERVE = "tokenscale-worker serve"


def _bad(tmp_path: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    see = f" (see {SERVE} --help)"
    port = "must be from 0 to 65535 (0 picks a free port)"
    return [
        (["--port", "70000"], f"argument --port: {port}, got 70000{see}"),
        (["--port", "-1"], f"argument --port: {port}, got -1{see}"),
        (["--port", "http"], f"argument --port: must be an integer, got 'http'{see}"),
        (["--port", "80.5"], f"argument --port: must be an integer, got '80.5'{see}"),
        (["--engine-port", "65536"], f"argument --engine-port: {port}, got 65536{see}"),
        (["--gpu", "tpu"], "argument --gpu: invalid choice: 'tpu' (choose from 'a100-40gb', "
         f"'a100-80gb', 'h100-80gb', 'h200-141gb', 'l4-24gb', 'l40s-48gb'){see}"),
        (["--tuning", f"{a_file}/tuning.json"],
         f"argument --tuning: {a_file} is a file, so {a_file}/tuning.json cannot exist under "
         f"it{see}"),
        (["--tuning", str(tmp_path)], f"argument --tuning: {tmp_path} is a directory; give the "
         f"tuning file inside it, e.g. {tmp_path}/tuning.json{see}"),
        (["--tuning", ""], "argument --tuning: must be a file path such as "
         f"/etc/tokenscale/tuning/tuning.json{see}"),
        (["--concurrency-cap", "0"], "argument --concurrency-cap: must be from 1 to 65536, "
         f"got 0{see}"),
        (["--concurrency-cap", "1e18"], "argument --concurrency-cap: must be an integer, got "
         f"'1e18'{see}"),
        (["--concurrency-cap", "1000000000000000000"], "argument --concurrency-cap: must be "
         f"from 1 to 65536, got 1000000000000000000{see}"),
        (["--queue-limit", "-1"], "argument --queue-limit: must be from 0 to 1048576, got "
         f"-1{see}"),
        (["--drain-grace", "nan"], "argument --drain-grace: must be a finite number at least 0 "
         f"and at most 3600, got nan{see}"),
        (["--drain-grace", "-1"], "argument --drain-grace: must be a finite number at least 0 "
         f"and at most 3600, got -1{see}"),
        (["--drain-grace", "inf"], "argument --drain-grace: must be a finite number at least 0 "
         f"and at most 3600, got inf{see}"),
        (["--drain-grace", "3s"], f"argument --drain-grace: must be a number, got '3s'{see}"),
        (["--time-scale", "0"], "argument --time-scale: must be a finite number more than 0 and "
         f"at most 1e+06, got 0{see}"),
        (["--max-body-bytes", "10"], "argument --max-body-bytes: must be from 1024 to "
         f"1073741824, got 10{see}"),
        (["--read-timeout", "0"], "argument --read-timeout: must be a finite number more than 0 "
         f"and at most 3600, got 0{see}"),
        (["--write-timeout=-inf"], "argument --write-timeout: must be a finite number more "
         f"than 0 and at most 3600, got -inf{see}"),
        (["--tensor-parallel-size", "0"], "argument --tensor-parallel-size: must be from 1 to "
         f"64, got 0{see}"),
        (["--label", "novalue"], "argument --label: must look like name=value, got "
         f"'novalue'{see}"),
        (["--engine", "tgi"], "argument --engine: invalid choice: 'tgi' (choose from 'vllm', "
         f"'sim'){see}"),
        (["--custom-histogram-buckets", "{"], "argument --custom-histogram-buckets: not JSON: "
         f"Expecting property name enclosed in double quotes at character 1{see}"),
        (["--custom-histogram-buckets", '{"ttft": [1]}'], "argument --custom-histogram-buckets: "
         "histogram buckets: unknown family 'ttft'; known: request_latency, time_to_first_token, "
         "inter_token_latency, iteration_tokens, request_params_n, request_num_preemptions, "
         f"request_tokens, kv_cache_residency{see}"),
        (["--custom-histogram-buckets", '{"inter_token_latency": [0.05, 0.01]}'],
         "argument --custom-histogram-buckets: histogram buckets['inter_token_latency']: bounds "
         f"must be strictly increasing: [0.05, 0.01]{see}"),
        (["--custom-histogram-buckets", '[0.05]'], "argument --custom-histogram-buckets: "
         f'expected {{"family": [bound, ...], ...}}{see}'),
    ]  # fmt: skip


def test_bad_options_give_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in _bad(tmp_path):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--engine", "sim", *argv])
        assert exit_.value.code == 2, argv
        err = capsys.readouterr().err
        assert err == f"{SERVE}: {message}\n", argv


def _serve_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["serve", "--engine", "sim", "--host", "127.0.0.1", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


def test_bad_api_key_file_and_labels_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nokey"
    assert _serve_error(["--api-key-file", str(missing)], capsys) == (
        f"tokenscale-worker: --api-key-file {missing}: cannot read it (No such file or directory)\n"
    )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert _serve_error(["--api-key-file", str(empty)], capsys) == (
        f"tokenscale-worker: the API key in --api-key-file {empty} is empty; put the token "
        "there or unset it\n"
    )
    assert "metric label 'model_name=x' must look like name=value" in _serve_error(
        ["--label", "model_name=x", "--port", "0", "--tuning", str(tmp_path / "t")], capsys
    )


def test_port_in_use_and_bad_host_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = _serve_error(["--port", str(port), "--tuning", str(tmp_path / "t")], capsys)
    assert err == (
        f"tokenscale-worker: cannot listen on 127.0.0.1:{port}: error while "
        f"attempting to bind on address ('127.0.0.1', {port}): address already in use\n"
    )
    err = _serve_error(["--host", "999.1.1.1", "--port", "0", "--tuning", str(tmp_path / "t")],
                       capsys)  # fmt: skip
    assert err.startswith("tokenscale-worker: cannot listen on 999.1.1.1:0: ")


def test_the_real_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokenscale_worker.cli", "serve", "--port", "70000"],
        timeout=60, check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "tokenscale-worker serve: argument --port: must be from 0 to 65535 (0 picks a free "
        "port), got 70000 (see tokenscale-worker serve --help)\n"
    )

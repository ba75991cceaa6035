"""Real vLLM serves a model from the shared model cache: the fill command copies the tiny model
from a real S3-compatible server (moto's) into the cache directory, and the worker, configured as
the operator renders it for an `s3://` source with `spec.model.cache`, starts vLLM on the cache
entry (the path the replicas' read-only mount gives it), which answers through the gateway.

The e2e scenario (e2e/autoscale/test_model_cache.py) covers the Job, the gate and a cut transfer
with the simulator engine; this is the part only vLLM can check: that what the fill writes is
what vLLM loads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.tools import TINY_MODEL_SPEC, TINY_SERVED, tiny_model
from tests.worker.conftest import wait_until_ready
from tests.worker.s3_server import TEST_ENV, moto_server
from tests.worker.vllm_worker import rendered_config, vllm_worker
from tokenscale_contract.model_cache import cache_key
from tokenscale_worker.engine_profile import MODEL_CACHE_DIR_ENV

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
START_DEADLINE_S = 600.0
SOURCE = "s3://models/tiny-llama"


def upload(endpoint: str, model_dir: Path) -> int:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="models")
    files = [f for f in sorted(model_dir.iterdir()) if f.is_file()]
    for f in files:
        s3.upload_file(str(f), "models", f"tiny-llama/{f.name}")
    return len(files)


def cached_spec() -> dict[str, Any]:
    model = {**TINY_MODEL_SPEC, "source": SOURCE, "cache": {"claimName": "models-cache"}}
    return {"model": model, "resources": {"gpu": "l4-24gb"}}


def test_vllm_serves_the_model_the_fill_copied_from_s3(tmp_path: Path) -> None:
    model_dir = Path(tiny_model())
    cache = tmp_path / "model-cache"
    cache.mkdir()
    with moto_server() as endpoint:
        count = upload(endpoint, model_dir)
        fill = subprocess.run(
            [sys.executable, "-m", "tokenscale_worker.cli", "fill", "--source", SOURCE,
             "--cache-dir", str(cache)],
            env={**os.environ, **TEST_ENV, "AWS_ENDPOINT_URL": endpoint},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert fill.returncode == 0, fill.stderr
    assert f"{count} files" in fill.stdout, fill.stdout
    config = rendered_config(cached_spec())
    key = cache_key(SOURCE, None)
    assert config["modelCacheKey"] == key
    workdir = tmp_path / "worker"
    workdir.mkdir()
    # The pod mounts the claim at /model-cache; the cpu-test profile reads this directory there.
    with vllm_worker(workdir, config=config, extra_env={MODEL_CACHE_DIR_ENV: str(cache)}) as w:
        try:
            asyncio.run(wait_until_ready(f"{w.base}/ready", START_DEADLINE_S))
        except AssertionError:
            raise AssertionError(w.log_path.read_text()[-4000:]) from None
        models = asyncio.run(_models(w.base))
        # vLLM reports the path it loaded as the model's root: the fill's entry, nothing else.
        assert [m["root"] for m in models] == [str(cache / key)], models
        out = openai.OpenAI(base_url=f"{w.base}/v1", api_key="unused", max_retries=0)
        reply = out.completions.create(
            model=TINY_SERVED, prompt="The cache", max_tokens=8, extra_body={"ignore_eos": True}
        )
        assert reply.usage is not None and reply.usage.completion_tokens == 8


async def _models(base: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/v1/models") as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return list(body["data"])

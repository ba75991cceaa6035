"""The optional bearer token: API routes need it, probes and /metrics stay open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from aiohttp import web

from tests.worker.conftest import MODEL
from tests.worker.gateway_harness import gateway_on_stub, raw_request, request_bytes
from tokenscale_contract.interface import API_KEY_ENV
from tokenscale_sim.profile import build_profile
from tokenscale_sim.server import SimServer
from tokenscale_worker.auth import authorized, load_api_key
from tokenscale_worker.gateway import Gateway
from tokenscale_worker.limits import GatewayLimits
from tokenscale_worker.tuning import Tuning

KEY = "sk-test-0123456789"
GOOD = f"Authorization: Bearer {KEY}"


@pytest.mark.parametrize(
    "header",
    [
        None, "Authorization: Bearer wrong", f"Authorization: Basic {KEY}",
        f"Authorization: {KEY}", "Authorization: Bearer", f"Authorization: Bearer {KEY}x",
        f"Authorization: Bearer {KEY[:-1]}", "Authorization: Bearer \u00e9\u00e9",
    ],
)  # fmt: skip
async def test_api_routes_need_the_token(header: str | None) -> None:
    async with gateway_on_stub(api_key=KEY) as gw:
        extra = [header] if header else []
        for method, path in (("POST", "/v1/completions"), ("GET", "/v1/models"),
                             ("POST", "/tokenize"), ("GET", "/version")):  # fmt: skip
            resp = await raw_request(gw.port, request_bytes(method, path, b"{}", *extra))
            assert resp.status == 401, (header, path)
            assert resp.headers["www-authenticate"] == 'Bearer realm="tokenscale"'
            assert resp.error() == {
                "message": "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "type": "AuthenticationError", "param": None, "code": 401,
            }  # fmt: skip
        assert gw.engine.paths() == []


async def test_right_token_passes_and_is_not_forwarded() -> None:
    async with gateway_on_stub(api_key=KEY) as gw:
        for header in (GOOD, f"authorization: bearer {KEY}", f"Authorization:  Bearer  {KEY} "):
            resp = await raw_request(
                gw.port, request_bytes("POST", "/v1/completions", b"{}", header)
            )
            assert resp.status == 200, header
        assert [s.authorization for s in gw.engine.seen if s.path == "/v1/completions"] == [
            None
        ] * 3


async def test_probes_and_metrics_stay_open() -> None:
    async with gateway_on_stub(api_key=KEY) as gw:
        for path in ("/ready", "/health", "/metrics", "/ping"):
            resp = await raw_request(gw.port, request_bytes("GET", path))
            assert resp.status == 200, path


async def test_token_is_checked_before_the_body_is_read() -> None:
    """An unauthenticated client cannot make the gateway wait for (or buffer) a body."""
    async with gateway_on_stub(api_key=KEY, limits=GatewayLimits(read_timeout_s=600)) as gw:
        head = b"POST /v1/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 5000000\r\n\r\n"
        resp = await raw_request(gw.port, head + b"{", deadline_s=15)
        assert resp.status == 401
        assert gw.gateway.bodies.held == 0


@pytest.fixture
async def sim_with_key() -> AsyncIterator[str]:
    sim = SimServer(build_profile("llama-3.1-8b", "h100-80gb", max_model_len=4096), MODEL, {})
    runners: list[web.AppRunner] = []
    for app_ in (sim.app(),):
        runner = web.AppRunner(app_, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
    engine = f"http://127.0.0.1:{runners[0].addresses[0][1]}"
    gateway = Gateway(engine, Tuning(8, 8), api_key=KEY)
    gw_runner = web.AppRunner(gateway.app(), handler_cancellation=True)
    await gw_runner.setup()
    await web.TCPSite(gw_runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{gw_runner.addresses[0][1]}"
    await gw_runner.cleanup()
    await runners[0].cleanup()


async def test_openai_client_with_and_without_the_key(sim_with_key: str) -> None:
    good = openai.AsyncOpenAI(base_url=f"{sim_with_key}/v1", api_key=KEY, max_retries=0)
    out = await good.completions.create(model=MODEL, prompt="a b", max_tokens=4)
    assert out.usage is not None and out.usage.completion_tokens == 4
    assert [m.id for m in (await good.models.list()).data] == [MODEL]
    bad = openai.AsyncOpenAI(base_url=f"{sim_with_key}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="missing or wrong API key"):
        await bad.completions.create(model=MODEL, prompt="a b", max_tokens=4)


def test_key_from_env_and_file(tmp_path: Path) -> None:
    assert load_api_key(None, {}) is None
    assert load_api_key(None, {API_KEY_ENV: f"{KEY}\n"}) == KEY  # Secrets often end in \n
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    assert load_api_key(str(key_file), {API_KEY_ENV: "other"}) == KEY  # the file wins


@pytest.mark.parametrize(
    ("path", "env", "message"),
    [
        (None, "", f"the API key in ${API_KEY_ENV} is empty; put the token there or unset it"),
        (None, "two words", f"the API key in ${API_KEY_ENV} must be 1-4096 printable ASCII "
         "characters without spaces (it travels in an HTTP header)"),
        (None, "caf\u00e9", f"the API key in ${API_KEY_ENV} must be 1-4096 printable ASCII "
         "characters without spaces (it travels in an HTTP header)"),
        (None, "k" * 5000, f"the API key in ${API_KEY_ENV} must be 1-4096 printable ASCII "
         "characters without spaces (it travels in an HTTP header)"),
        ("/nonexistent/key", "", "--api-key-file /nonexistent/key: cannot read it "
         "(No such file or directory)"),
        ("/", "", "--api-key-file /: cannot read it (Is a directory)"),
    ],
)  # fmt: skip
def test_bad_keys_are_refused(path: str | None, env: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        load_api_key(path, {API_KEY_ENV: env})
    assert str(err.value) == message


def test_authorized_compares_exactly() -> None:
    assert authorized(f"Bearer {KEY}", KEY)
    assert not authorized(None, KEY)
    assert not authorized(f"Bearer {KEY} extra", KEY)
    assert not authorized("Bearer \udcff", KEY)  # undecodable bytes: refused, no exception


async def test_gateway_still_serves_after_the_auth_cases() -> None:
    async with gateway_on_stub(api_key=KEY) as gw:
        bad = [
            raw_request(gw.port, request_bytes("POST", "/v1/completions", b"{}")) for _ in range(20)
        ]
        assert {r.status for r in await asyncio.gather(*bad)} == {401}
        ok = await raw_request(gw.port, request_bytes("POST", "/v1/completions", b"{}", GOOD))
        assert ok.status == 200

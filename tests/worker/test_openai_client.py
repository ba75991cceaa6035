"""The official openai client against gateway + simulator: the API shapes and usage counts."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.worker.conftest import MODEL, InProcessWorker

PROMPT = "one two three four five six seven"  # 7 words -> 7 prompt tokens


def client(w: InProcessWorker) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{w.base}/v1", api_key="unused", max_retries=0)


async def test_models_lists_the_served_name(worker: InProcessWorker) -> None:
    models = await client(worker).models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_completion(worker: InProcessWorker) -> None:
    out = await client(worker).completions.create(model=MODEL, prompt=PROMPT, max_tokens=12)
    assert out.choices[0].finish_reason == "length"
    assert len(out.choices[0].text.split()) == 12
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (7, 12)
    assert out.usage.total_tokens == 19


async def test_completion_stream(worker: InProcessWorker) -> None:
    stream = await client(worker).completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=9, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    texts, usage, reasons = [], None, []
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts.append(choice.text)
            reasons.append(choice.finish_reason)
    assert len(texts) == 9
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 9)


async def test_chat(worker: InProcessWorker) -> None:
    out = await client(worker).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=5
    )
    assert out.choices[0].message.role == "assistant"
    assert len((out.choices[0].message.content or "").split()) == 5
    assert out.usage is not None
    # 7 words + 4 template tokens for the one message.
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (11, 5)


async def test_chat_stream(worker: InProcessWorker) -> None:
    stream = await client(worker).chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "be brief"},
                               {"role": "user", "content": PROMPT}],
        max_tokens=6, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    content, usage, finish = [], None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(content) == 6 and finish == "length"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (17, 6)


async def test_chat_without_max_tokens_stops_like_eos(worker: InProcessWorker) -> None:
    out = await client(worker).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens == 256


@pytest.mark.parametrize(
    ("path", "body", "status", "err_type", "param"),
    [
        ("/v1/completions", b"{not json", 400, "BadRequestError", None),
        ("/v1/completions", b'{"model": "nope", "prompt": "x"}', 404, "NotFoundError", "model"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": -3}', 400, "BadRequestError",
         "max_tokens"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], '
         b'"max_tokens": 0}', 400, "BadRequestError", "max_tokens"),
        ("/v1/completions", b'{"prompt": "' + b"w " * 5000 + b'"}', 400, "BadRequestError",
         "input_tokens"),
        ("/v1/completions", b'{"prompt": "x y", "max_tokens": 5000}', 400, "BadRequestError",
         "max_tokens"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "BadRequestError", "messages"),
    ],
)  # fmt: skip
async def test_bad_input_gets_vllm_error_shape(
    worker: InProcessWorker, path: str, body: bytes, status: int, err_type: str, param: str | None
) -> None:
    for base in (worker.base, worker.engine_base):  # the gateway relays the engine's answer as is
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                base + path, data=body, headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            assert resp.status == status
            payload = await resp.json()
        error = payload["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["param"], error["code"]) == (err_type, param, status)
        assert error["message"]


async def test_openai_client_raises_typed_errors(worker: InProcessWorker) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        await client(worker).completions.create(model="other", prompt="x")
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        await client(worker).completions.create(model=MODEL, prompt="w " * 5000)

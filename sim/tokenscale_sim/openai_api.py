"""OpenAI request parsing and response shapes for the simulator, matching vLLM's.

Token counting: the simulator has no tokenizer, so a prompt's length is its number of
whitespace-separated words (a list of token ids counts as its length); chat prompts add 4 tokens
per message for the chat template. Generated text is synthetic, one word per token, so the
`usage` a client sees always matches the tokens it received.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
COMPLETION_DEFAULT_MAX_TOKENS = 16  # vLLM's CompletionRequest default, as in OpenAI's API
# A chat request without max_tokens runs to the end of the context in vLLM unless the model emits
# EOS; the simulator models that EOS as a stop after this many tokens (finish_reason "stop").
CHAT_DEFAULT_OUTPUT_TOKENS = 256
CHAT_TEMPLATE_TOKENS_PER_MESSAGE = 4


class ApiError(Exception):
    """An error response in vLLM's ErrorResponse shape."""

    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.err_type, self.param = status, message, err_type, param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.err_type,
                "param": self.param,
                "code": self.status,
            }
        }


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "BadRequestError", param)


@dataclass(frozen=True)
class SimRequest:
    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int
    output_tokens: int | None  # tokens before a modelled EOS; None means run to max_tokens
    stream: bool
    include_usage: bool


def count_words(text: str) -> int:
    return len(text.split())


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty list", "messages")
        total = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            total += count_words(content or "") + CHAT_TEMPLATE_TOKENS_PER_MESSAGE
        return total
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return max(1, count_words(prompt))
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    raise bad_request(
        "prompt must be a string, a list of token ids, or a batch of one of those", "prompt"
    )


def _max_tokens(body: dict[str, Any], chat: bool) -> int | None:
    key = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{key} must be an integer, got {value!r}.", key)
    if value < 1:
        raise bad_request(f"max_tokens must be at least 1, got {value}.", key)
    return value


def parse_request(raw: bytes, chat: bool, served_name: str, max_model_len: int) -> SimRequest:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise bad_request(f"request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    model = body.get("model") or served_name
    if model != served_name:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    if body.get("n", 1) != 1:
        raise bad_request("the simulator supports n=1 only", "n")
    prompt = _prompt_tokens(body, chat)
    if prompt >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains {prompt} input tokens, which exceeds this limit even without any "
            "output tokens. Please reduce the length of the input prompt.",
            "input_tokens",
        )
    asked = _max_tokens(body, chat)
    if asked is not None and prompt + asked > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {asked} output tokens and your prompt contains {prompt} input tokens, "
            f"for a total of {prompt + asked} tokens. Please reduce the length of the input "
            "prompt or the number of requested output tokens.",
            "max_tokens",
        )
    output: int | None = None
    if asked is None:
        asked = max_model_len - prompt if chat else COMPLETION_DEFAULT_MAX_TOKENS
        output = min(asked, CHAT_DEFAULT_OUTPUT_TOKENS) if chat else None
    options = body.get("stream_options") or {}
    return SimRequest(
        chat=chat,
        model=model,
        prompt_tokens=prompt,
        max_tokens=asked,
        output_tokens=output,
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
    )


def word(i: int) -> str:
    return WORDS[i % len(WORDS)] + " "


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
    }


class Reply:
    """Builds the response body or SSE chunks for one request."""

    def __init__(self, req: SimRequest) -> None:
        self.req = req
        self.id = ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if req.chat else "text_completion"

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.req.model}

    def full(self, tokens: int, finish_reason: str) -> dict[str, Any]:
        text = "".join(word(i) for i in range(tokens))
        if self.req.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        return {
            **self._head(self.object),
            "choices": [choice],
            "usage": usage(self.req.prompt_tokens, tokens),
        }

    def _sse(self, payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def first_chunk(self) -> bytes:
        """Chat streams open with the assistant role, as vLLM's do; completions send nothing."""
        if not self.req.chat:
            return b""
        delta = {"role": "assistant", "content": ""}
        return self._chunk(delta, None)

    def _chunk(self, piece: Any, finish_reason: str | None) -> bytes:
        if self.req.chat:
            choice = {"index": 0, "delta": piece, "logprobs": None, "finish_reason": finish_reason}
            return self._sse({**self._head("chat.completion.chunk"), "choices": [choice]})
        choice = {
            "index": 0,
            "text": piece,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
        return self._sse({**self._head("text_completion"), "choices": [choice]})

    def token_chunk(self, i: int, finish_reason: str | None) -> bytes:
        piece: Any = {"content": word(i)} if self.req.chat else word(i)
        return self._chunk(piece, finish_reason)

    def last_chunks(self, tokens: int) -> bytes:
        out = b""
        if self.req.include_usage:
            obj = "chat.completion.chunk" if self.req.chat else "text_completion"
            out += self._sse(
                {**self._head(obj), "choices": [], "usage": usage(self.req.prompt_tokens, tokens)}
            )
        return out + b"data: [DONE]\n\n"

"""Which requests the gateway serves, and how: the route table of vLLM 0.32.0's API server.

Read from `vllm/entrypoints/**/api_router.py` in the vllm 0.32.0 wheel (the version the image's
FROM pins). Three kinds:

- CAPPED: everything that makes the engine run the model (generation, pooling, scoring,
  transcription). These pass the concurrency cap, so no client can reach the GPU around it.
- PASS: cheap reads the API needs (model list, version, tokenizer, a stored response) and
  the cancel of a stored response; forwarded uncapped, with the same body limit and relay.
- everything else is refused with 404 (405 for a known path with another method): vLLM's admin
  and development routes (LoRA loading, profiling, sleep, weight updates, collective_rpc, cache
  resets, elastic EP, fault tolerance), the disaggregated render/derender routes and the
  /v1/realtime websocket are not reachable through the public port.

Matching is on the exact decoded path: no trailing slash, no double slash, no dot segments; the
request is forwarded to the canonical path that matched (never the client's raw spelling), so a
path the engine would normalise differently cannot slip past the table.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import quote

from tokenscale_contract.interface import HEALTH_PATH, METRICS_PATH, READY_PATH


class Kind(enum.Enum):
    CAPPED = "capped"
    PASS = "pass"
    LOCAL = "local"  # answered by the gateway itself (/ready, /health, /metrics)


CAPPED_POST_PATHS: tuple[str, ...] = (
    # OpenAI-compatible generation
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/chat/completions/batch",
    "/v1/responses",
    # Anthropic- and Cohere-compatible chat
    "/v1/messages",
    "/cohere/v2/chat",
    # SageMaker's single inference route (dispatches to any of the others)
    "/invocations",
    # token-in/token-out generation, generative scoring, structured decisions
    "/inference/v1/generate",
    "/generative_scoring",
    "/v1/systemone",
    # pooling models: embeddings, classification, scoring, reranking
    "/v1/embeddings",
    "/v2/embed",
    "/pooling",
    "/classify",
    "/score",
    "/v1/score",
    "/rerank",
    "/v1/rerank",
    "/v2/rerank",
    # speech to text
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)

PASS_PATHS: dict[str, frozenset[str]] = {
    "/v1/models": frozenset({"GET"}),
    "/version": frozenset({"GET"}),
    "/ping": frozenset({"GET", "POST"}),  # SageMaker's health check, paired with /invocations
    "/tokenize": frozenset({"POST"}),
    "/detokenize": frozenset({"POST"}),
    "/tokenizer_info": frozenset({"GET"}),
    "/v1/messages/count_tokens": frozenset({"POST"}),
}

LOCAL_PATHS: dict[str, frozenset[str]] = {
    READY_PATH: frozenset({"GET"}),
    HEALTH_PATH: frozenset({"GET"}),
    METRICS_PATH: frozenset({"GET"}),
}

# Probes and scrapes stay open when a bearer token is configured: the kubelet and Prometheus
# carry no token. Everything else needs it.
OPEN_PATHS: frozenset[str] = frozenset({READY_PATH, HEALTH_PATH, METRICS_PATH, "/ping"})

# /v1/responses/{response_id} (GET) and /v1/responses/{response_id}/cancel (POST).
_RESPONSE_ID = re.compile(r"^/v1/responses/([A-Za-z0-9_\-]{1,128})(/cancel)?$")


@dataclass(frozen=True)
class Route:
    kind: Kind
    path: str  # canonical path to forward to (or to answer locally)


@dataclass(frozen=True)
class Refusal:
    status: int  # 404 unknown path, 405 known path with another method
    message: str
    allow: frozenset[str] = frozenset()


_TABLE: dict[str, tuple[Kind, frozenset[str]]] = {
    **{p: (Kind.CAPPED, frozenset({"POST"})) for p in CAPPED_POST_PATHS},
    **{p: (Kind.PASS, m) for p, m in PASS_PATHS.items()},
    **{p: (Kind.LOCAL, m) for p, m in LOCAL_PATHS.items()},
}


def _lookup(path: str) -> tuple[Kind, frozenset[str], str] | None:
    if path in _TABLE:
        kind, methods = _TABLE[path]
        return kind, methods, path
    match = _RESPONSE_ID.match(path)
    if match is None:
        return None
    canonical = "/v1/responses/" + quote(match.group(1), safe="") + (match.group(2) or "")
    return Kind.PASS, frozenset({"POST" if match.group(2) else "GET"}), canonical


def classify(method: str, path: str) -> Route | Refusal:
    """The route for a request, or why it is refused."""
    found = _lookup(path)
    if found is None:
        return Refusal(
            404,
            f"{path[:200]!r} is not an API route this gateway serves; see the worker docs for "
            "the routes (vLLM's admin and development routes are not exposed)",
        )
    kind, methods, canonical = found
    if method not in methods:
        allowed = ", ".join(sorted(methods))
        return Refusal(405, f"{path} accepts {allowed}, not {method[:20]}", methods)
    return Route(kind, canonical)

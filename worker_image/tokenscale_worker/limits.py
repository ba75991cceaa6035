"""Bounds on what the gateway accepts: request bodies, slow clients, and the tuning values.

One place for the numbers the CLI, the tuning file and the gateway all check against.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
# A chat request with a few base64 images is a few MB; 8 MiB leaves room. Audio uploads for
# /v1/audio/* (vLLM takes clips up to 25 MB) need --max-body-bytes raised.
DEFAULT_MAX_BODY_BYTES = 8 * MIB
MAX_BODY_BYTES_LIMIT = 1024 * MIB
# Request bodies held in memory at once (being read, queued or being forwarded), across all
# requests: 32 bodies of the default maximum. Beyond it a new request gets 503 + Retry-After, so
# many large uploads cannot grow the gateway's memory without bound.
BUFFER_BUDGET_BODIES = 32
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_WRITE_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
# Concurrency cap and queue bound: the operator's spec allows at most 4096 concurrent requests
# per replica (queue 4 per slot); these ceilings leave headroom and refuse absurd values such as
# 1e18, which would make the cap meaningless.
MAX_CONCURRENCY_CAP = 65_536
MAX_QUEUE_LIMIT = 1_048_576
MAX_DRAIN_GRACE_S = 3600.0


@dataclass(frozen=True)
class GatewayLimits:
    """Per-request bounds; the defaults are what `tokenscale-worker serve` uses."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # The whole body must arrive within this many seconds of the headers (slow uploads get 408).
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    # A client that does not take a response chunk within this many seconds is cut off, and its
    # engine request cancelled, so a stalled reader cannot hold a slot.
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    # How many maximum-size bodies the gateway holds in memory at once, across requests.
    buffer_bodies: int = BUFFER_BUDGET_BODIES

    @property
    def buffer_budget_bytes(self) -> int:
        return self.buffer_bodies * self.max_body_bytes

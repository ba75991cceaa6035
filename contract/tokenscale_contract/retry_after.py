"""The Retry-After a full gateway queue answers with: the worker's gateway sends it, and the
benchmark's clients wait for it (one arithmetic for both)."""

from __future__ import annotations

import math

# The longest wait the gateway asks for; the OpenAI client honours a Retry-After up to 60 s.
MAX_RETRY_AFTER_S = 60


def retry_after_s(queue_length: int, cap: int, mean_service_s: float) -> int:
    """Seconds a rejected client should wait: the time the queue ahead takes to clear.

    256 queued, cap 32, requests take 4 s each -> 256 / 32 x 4 s = 32 s. At least 1 s, at most 60 s.
    """
    if mean_service_s <= 0:
        return 1
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(queue_length / cap * mean_service_s)))

"""What the world adds to a trace's requests: clients that give up, retry and cancel, and the
engines' prefix cache. The drawn world turns the client behaviour on (`Scenario.clients`); the
known world keeps the ideal client (waits forever, never cancels, no queue bound), so that its
published tables stay comparable.

- **Timeouts.** A client with no first token `timeout_s` after it sent the request disconnects;
  the gateway drops it from its queue, or the engine aborts it (vLLM frees its KV blocks). It
  counts as a miss, and the capacity it held is free again.
- **Cancellations.** A share of clients leave mid-answer (a user pressing stop): the request ends
  after a uniform share of its output. It is scored on what it got.
- **429s at the queue bound.** Each replica's gateway queues at most cap x `queue_per_slot`
  requests (what the operator renders: `domain.render.QUEUE_PER_SLOT`); beyond that it answers
  429 with Retry-After. The OpenAI client retries a 429 twice (`max_retries=2`), after the
  Retry-After it is given; a request refused three times is lost. TTFT still counts from the
  first attempt.
- **Prefix caching** (vLLM's automatic prefix caching, on by default): for a trace with
  Mooncake `hash_ids`, each replica keeps the blocks it has seen in an LRU as large as its KV
  cache, and a request skips the prefill of its leading blocks found there (least-request
  balancing knows nothing of it, as with Envoy). For a trace without them, `prefix_hit_rate`
  gives the share of every prompt found cached (0 by default: the Azure traces say nothing of
  it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenscale.bench.trace_rows import HASH_BLOCK_TOKENS
from tokenscale.bench.traces import Trace

I64 = npt.NDArray[np.int64]
# The OpenAI Python client's default max_retries.
CLIENT_RETRIES = 2


@dataclass(frozen=True)
class ClientModel:
    timeout_s: float | None = None
    cancel_share: float = 0.0
    queue_per_slot: int | None = None
    retries: int = CLIENT_RETRIES
    prefix_hit_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"client timeout must be > 0 seconds, got {self.timeout_s}")
        if not 0.0 <= self.cancel_share <= 1.0:
            raise ValueError(f"cancel share must be from 0 to 1, got {self.cancel_share}")
        if not 0.0 <= self.prefix_hit_rate < 1.0:
            raise ValueError(
                f"prefix hit rate must be from 0 to below 1, got {self.prefix_hit_rate}"
            )
        if self.queue_per_slot is not None and self.queue_per_slot < 0:
            raise ValueError(f"queue per slot must be 0 or more, got {self.queue_per_slot}")

    def outputs(self, trace: Trace, seed: int) -> I64:
        """Output tokens each request will receive: cancelled ones stop early."""
        out = trace.output.copy()
        if self.cancel_share <= 0 or not len(out):
            return out
        rng = np.random.default_rng([seed, 7])
        leave = rng.random(len(out)) < self.cancel_share
        share = rng.random(len(out))
        cut = np.maximum(1, np.ceil(out * share)).astype(np.int64)
        out[leave] = np.minimum(out[leave], cut[leave])
        return out

    def fixed_hits(self, trace: Trace) -> I64 | None:
        """Cached prompt tokens per request for a trace without hash ids; None with them."""
        if trace.hash_ids is not None:
            return None
        hits: I64 = np.floor(trace.prompt * self.prefix_hit_rate).astype(np.int64)
        return hits


class PrefixCache:
    """One replica's cached prompt blocks, least recently used evicted first."""

    __slots__ = ("_blocks", "capacity")

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = max(0, capacity_tokens // HASH_BLOCK_TOKENS)
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def lookup_and_insert(self, ids: tuple[int, ...]) -> int:
        """Tokens of the leading blocks of `ids` already cached; then cache all of `ids`."""
        hit = 0
        for block in ids:
            if block not in self._blocks:
                break
            hit += 1
        blocks = self._blocks
        for block in ids:
            blocks[block] = None
            blocks.move_to_end(block)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        return hit * HASH_BLOCK_TOKENS


def seen_before_hits(trace: Trace) -> I64:
    """Per request, the tokens of its leading blocks seen in any earlier request: what one
    unbounded cache shared by every replica would hit. No placement of requests on replicas
    hits more, so the lower bound uses it."""
    out = np.zeros(len(trace), dtype=np.int64)
    if trace.hash_ids is None:
        return out
    seen: set[int] = set()
    for i, ids in enumerate(trace.hash_ids):
        hit = 0
        for block in ids:
            if block not in seen:
                break
            hit += 1
        out[i] = hit * HASH_BLOCK_TOKENS
        seen.update(ids)
    return out

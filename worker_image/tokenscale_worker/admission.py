"""Per-replica concurrency cap with a bounded FIFO queue in front of it. Pure: no I/O, no clock.

The gateway uses it with asyncio futures as tickets; the benchmark uses it with request ids in
virtual time, so both share exactly these semantics:

- a request is admitted at once while fewer than `cap` are in flight and nobody is queued (FIFO:
  a newcomer never overtakes a queued request);
- otherwise it waits in the queue if fewer than `queue_limit` are waiting, else it is rejected;
- every `release` admits queued requests, oldest first, until `cap` are in flight again;
- lowering the cap never touches requests already in flight: admissions just pause until the
  in-flight count drops below the new cap; raising it admits queued requests at once;
- once draining, new requests are rejected and queued ones still run.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Verdict(enum.Enum):
    ADMITTED = "admitted"
    QUEUED = "queued"
    REJECTED_QUEUE_FULL = "queue_full"
    REJECTED_DRAINING = "draining"


class Admission(Generic[T]):
    """Cap-and-queue state; tickets are opaque to it."""

    def __init__(self, cap: int, queue_limit: int) -> None:
        self._check(cap, queue_limit)
        self.cap = cap
        self.queue_limit = queue_limit
        self.in_flight = 0
        self.queue: deque[T] = deque()
        self.draining = False

    @staticmethod
    def _check(cap: int, queue_limit: int) -> None:
        if cap < 1:
            raise ValueError(f"concurrency cap must be at least 1, got {cap}")
        if queue_limit < 0:
            raise ValueError(f"queue limit must be 0 or more, got {queue_limit}")

    @property
    def queue_length(self) -> int:
        return len(self.queue)

    def request(self, ticket: T) -> Verdict:
        if self.draining:
            return Verdict.REJECTED_DRAINING
        if self.in_flight < self.cap and not self.queue:
            self.in_flight += 1
            return Verdict.ADMITTED
        if len(self.queue) < self.queue_limit:
            self.queue.append(ticket)
            return Verdict.QUEUED
        return Verdict.REJECTED_QUEUE_FULL

    def release(self) -> list[T]:
        """One in-flight request ended; returns the queued tickets admitted in its place."""
        if self.in_flight <= 0:
            raise RuntimeError("release without a matching admission")
        self.in_flight -= 1
        return self._fill()

    def cancel(self, ticket: T) -> bool:
        """A queued request gave up (client went away); False if it was not queued."""
        try:
            self.queue.remove(ticket)
        except ValueError:
            return False
        return True

    def set_limits(self, cap: int, queue_limit: int) -> list[T]:
        """Apply new limits; returns tickets admitted because the cap went up.

        A queue limit below the current queue length keeps the queued requests (nothing accepted
        is dropped); only newcomers see the smaller limit.
        """
        self._check(cap, queue_limit)
        self.cap, self.queue_limit = cap, queue_limit
        return self._fill()

    def drain(self) -> None:
        self.draining = True

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and not self.queue

    def _fill(self) -> list[T]:
        admitted: list[T] = []
        while self.queue and self.in_flight < self.cap:
            admitted.append(self.queue.popleft())
            self.in_flight += 1
        return admitted

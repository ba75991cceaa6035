"""The tuning file the autoscaler writes (a ConfigMap mounted as JSON), polled for changes.

Polling the file's identity every 0.5 s is enough for the 2 s the autoscaler allows, needs no
inotify (ConfigMap volumes swap a symlink, which some watchers miss) and costs one stat() call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from tokenscale_worker.contract import TUNING_CAP_KEY, TUNING_QUEUE_KEY

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Tuning:
    concurrency_cap: int
    queue_limit: int


def parse_tuning(text: str, current: Tuning) -> Tuning:
    """New limits from the file's text; keys left out keep their current value.

    Raises ValueError naming the key and the accepted range.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object such as {"concurrencyCap": 24}')
    cap = data.get(TUNING_CAP_KEY, current.concurrency_cap)
    queue = data.get(TUNING_QUEUE_KEY, current.queue_limit)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ValueError(f"{TUNING_CAP_KEY} must be an integer >= 1, got {cap!r}")
    if not isinstance(queue, int) or isinstance(queue, bool) or queue < 0:
        raise ValueError(f"{TUNING_QUEUE_KEY} must be an integer >= 0, got {queue!r}")
    return Tuning(cap, queue)


class TuningWatcher:
    """Calls `apply` with the file's limits at start and whenever the file changes."""

    def __init__(
        self,
        path: str,
        current: Tuning,
        apply: Callable[[Tuning], None],
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.path = path
        self.current = current
        self._apply = apply
        self._interval = interval_s
        self._identity: tuple[int, int, int] | None = None

    def poll_once(self) -> bool:
        """Check the file once; True when new limits were applied."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        identity = (st.st_mtime_ns, st.st_ino, st.st_size)
        if identity == self._identity:
            return False
        self._identity = identity
        try:
            with open(self.path, encoding="utf-8") as fh:
                new = parse_tuning(fh.read(), self.current)
        except (OSError, ValueError) as err:
            # Keep serving with the limits we have: a bad write must not stop the replica.
            log.warning("ignoring tuning file %s: %s", self.path, err)
            return False
        if new == self.current:
            return False
        log.info(
            "tuning %s: cap %d, queue limit %d", self.path, new.concurrency_cap, new.queue_limit
        )
        self.current = new
        self._apply(new)
        return True

    async def run(self) -> None:
        while True:
            self.poll_once()
            await asyncio.sleep(self._interval)

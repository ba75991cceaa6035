"""The tuning file the autoscaler writes (a ConfigMap mounted as JSON), polled for changes.

Polling the file's identity every 0.5 s is enough for the 2 s the autoscaler allows, needs no
inotify (ConfigMap volumes swap a symlink, which some watchers miss) and costs one stat() call.
The watcher never stops: any error reading or parsing the file (missing, a directory, a path
component that is not a directory, no permission, half-written JSON, absurd values) is logged
once and the current limits stay; the file is read again when it changes or the error clears.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenscale_contract.interface import TUNING_CAP_KEY, TUNING_QUEUE_KEY
from tokenscale_worker.limits import MAX_CONCURRENCY_CAP, MAX_QUEUE_LIMIT

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
# The autoscaler writes about 40 bytes; anything much larger is not a tuning file.
MAX_TUNING_BYTES = 64 * 1024
_BOUNDS = {TUNING_CAP_KEY: (1, MAX_CONCURRENCY_CAP), TUNING_QUEUE_KEY: (0, MAX_QUEUE_LIMIT)}


@dataclass(frozen=True)
class Tuning:
    concurrency_cap: int
    queue_limit: int


def bounded_int(key: str, value: object) -> int:
    """`value` if it is a JSON integer within the key's range; ValueError naming key and range."""
    low, high = _BOUNDS[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        shown = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge int"
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {shown}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def parse_tuning(text: str, current: Tuning) -> Tuning:
    """New limits from the file's text; keys left out keep their current value.

    Raises ValueError naming the key and the accepted range.
    """
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err.msg} at line {err.lineno}") from None
    except ValueError as err:  # a duplicate key, an integer of thousands of digits
        raise ValueError(f"not a tuning document: {err}") from None
    except RecursionError:
        raise ValueError("not a tuning document: nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object such as {"concurrencyCap": 24}')
    unknown = sorted(set(data) - set(_BOUNDS))
    if unknown:
        log.warning("tuning file: ignoring unknown keys %s", ", ".join(map(repr, unknown[:5])))
    cap = bounded_int(TUNING_CAP_KEY, data.get(TUNING_CAP_KEY, current.concurrency_cap))
    queue = bounded_int(TUNING_QUEUE_KEY, data.get(TUNING_QUEUE_KEY, current.queue_limit))
    return Tuning(cap, queue)


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        raw = fh.read(MAX_TUNING_BYTES + 1)
    if len(raw) > MAX_TUNING_BYTES:
        raise ValueError(f"larger than {MAX_TUNING_BYTES} bytes; not a tuning file")
    return raw.decode("utf-8")


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
        self._identity: tuple[int, ...] | None = None
        self._last_problem: str | None = None

    def _problem(self, message: str) -> None:
        """Log a problem once, not on every poll while it lasts."""
        if message != self._last_problem:
            log.warning("tuning file %s: %s; keeping cap %d, queue limit %d", self.path, message,
                        self.current.concurrency_cap, self.current.queue_limit)  # fmt: skip
            self._last_problem = message

    def poll_once(self) -> bool:
        """Check the file once; True when new limits were applied."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._identity = None
            return False
        except OSError as err:
            self._identity = None
            self._problem(f"cannot stat it ({err.strerror})")
            return False
        # ctime too: a chmod that makes an unreadable file readable changes only ctime.
        identity = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size, st.st_mode)
        if identity == self._identity:
            return False
        try:
            new = parse_tuning(_read_text(self.path), self.current)
        except OSError as err:
            # Not remembered as seen: a transient error (permissions, a swap in progress) is
            # retried on the next poll.
            self._problem(f"cannot read it ({err.strerror or err})")
            return False
        except ValueError as err:  # bad JSON, bad values, not UTF-8: wait for the next write
            self._identity = identity
            self._problem(str(err))
            return False
        self._last_problem = None
        if new == self.current:
            self._identity = identity
            return False
        log.info(
            "tuning %s: cap %d, queue limit %d", self.path, new.concurrency_cap, new.queue_limit
        )
        # Applied first: if applying fails, the file is not marked as seen and is tried again.
        self._apply(new)
        self.current = new
        self._identity = identity
        return True

    async def run(self) -> None:
        while True:
            try:
                self.poll_once()
            except Exception:  # a bug here must not stop the live tuning of a serving replica
                log.exception("tuning watcher: unexpected error; still watching %s", self.path)
            await asyncio.sleep(self._interval)

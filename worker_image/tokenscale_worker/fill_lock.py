"""One fill per cache entry at a time.

Two services that name the same claim and the same model run two fill Jobs for one key. Without a
lock both would write the same `<key>.partial/`. The lock is a file beside the entry
(`<key>.lock`), created exclusively; its holder touches it every `HEARTBEAT_S` while it works. A
second fill waits while the lock is fresh. It finishes at once when the first one has published the
entry, and takes the lock over when the holder stopped touching it for `STALE_AFTER_S` (its pod was
killed or its node lost). It does not exit and retry: that would spend the Job's backoff limit on a
long first fill (a 140 GB copy outlasts six retries).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"
HEARTBEAT_S = 10.0
# Twelve missed heartbeats: a holder that is merely slow (a busy node, a stalled NFS write) is not
# taken over.
STALE_AFTER_S = 120.0
POLL_S = 2.0
WAIT_LOG_EVERY_S = 30.0

log = logging.getLogger(__name__)


def _try_create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def exclusive(path: Path, done: Callable[[], bool]) -> Iterator[bool]:
    """Hold the lock at `path` for the block (True), or yield False as soon as `done()` says
    another fill published the entry while this one waited."""
    next_log = 0.0
    while not _try_create(path):
        if done():
            yield False
            return
        age = _age(path)
        if age is not None and age > STALE_AFTER_S:
            log.warning("taking over %s: its holder stopped %.0f s ago", path, age)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        if time.monotonic() >= next_log:
            log.info("another fill of this entry is running (%s); waiting for it", path)
            next_log = time.monotonic() + WAIT_LOG_EVERY_S
        time.sleep(POLL_S)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True)
    beat.start()
    try:
        yield True
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

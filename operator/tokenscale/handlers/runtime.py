"""Process-wide handles the handlers share: the API wrapper, per-service locks, and the
coalescing of one service's reconciles."""

from __future__ import annotations

import datetime
import threading
from collections import defaultdict
from collections.abc import Callable

from tokenscale.adapters.kube import Kube, load_client

_kube: Kube | None = None
_dry_run = False
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()
# Services with a reconcile under way, and those asked for again while it ran.
_reconciles = threading.Condition()
_running: set[tuple[str, str]] = set()
_pending: set[tuple[str, str]] = set()


def configure(dry_run: bool) -> None:
    """Called once by `tokenscale run` before the handlers start."""
    global _dry_run, _kube
    _dry_run = dry_run
    _kube = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube(load_client(), dry_run=_dry_run)
    return _kube


def lock_for(namespace: str, name: str) -> threading.Lock:
    """Serialize reconciles of one service (its own events and its children's events)."""
    with _locks_guard:
        return _locks[(namespace, name)]


def reconcile_once(
    key: tuple[str, str],
    first: Callable[[], None],
    again: Callable[[], None],
    *,
    wait: bool,
) -> None:
    """Run one service's reconcile, one at a time per service, coalescing what comes meanwhile.

    While a reconcile of `key` runs, a request with `wait=False` (a child's event) only marks
    the service pending and returns; the running one then goes once more (`again`, which reads
    the latest copy) when it ends. A rollout's dozens of Deployment and pod events cost one
    reconcile per burst plus one, and none is lost: whatever an event said, the run after it
    reads. `wait=True` (kopf's create/update/resume handler, which kopf retries on failure)
    waits for the running one and then runs `first` itself."""
    with _reconciles:
        if key in _running:
            if not wait:
                _pending.add(key)
                return
            while key in _running:
                _reconciles.wait()
        _running.add(key)
        _pending.discard(key)
    try:
        with lock_for(*key):
            first()
        while True:
            with _reconciles:  # the check and the release in one step: no request falls between
                if key not in _pending:
                    _running.discard(key)
                    _reconciles.notify_all()
                    return
                _pending.discard(key)
            with lock_for(*key):
                again()
    except BaseException:
        with _reconciles:
            _running.discard(key)
            _reconciles.notify_all()
        raise


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Process-wide handles the handlers share: the API wrapper and per-service locks."""

from __future__ import annotations

import datetime
import threading
from collections import defaultdict

from tokenscale.adapters.kube import Kube, load_client

_kube: Kube | None = None
_dry_run = False
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


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


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

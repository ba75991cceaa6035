"""What the handlers of one operator share, in one object handed to every handler.

`tokenscale run` makes one `Registry` and gives it to kopf as the operator's memo; each handler
takes it from its `memo` (`registry(memo)`). Nothing is module-global, so a test that makes its
own registry sees nothing another test left behind.
"""

from __future__ import annotations

import datetime
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tokenscale.adapters.kube import Kube, load_client
from tokenscale.domain.signals import ServiceKey
from tokenscale.handlers.cache import WatchCache

# The autoscale tick's writers: decisions take milliseconds, writes are round trips.
WRITERS = 8


class Reconciles:
    """One reconcile of a service at a time, and the coalescing of the requests meanwhile."""

    def __init__(self) -> None:
        self._locks: defaultdict[ServiceKey, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._state = threading.Condition()
        self._running: set[ServiceKey] = set()
        self._pending: set[ServiceKey] = set()

    def lock_for(self, namespace: str, name: str) -> threading.Lock:
        """Serialize the writes of one service's status (reconciles and autoscale ticks)."""
        with self._locks_guard:
            return self._locks[(namespace, name)]

    def reconcile_once(
        self,
        key: ServiceKey,
        first: Callable[[], None],
        again: Callable[[], None],
        *,
        wait: bool,
    ) -> None:
        """Run one service's reconcile, one at a time per service, coalescing what comes
        meanwhile.

        While a reconcile of `key` runs, a request with `wait=False` (a child's event) only
        marks the service pending and returns; the running one then goes once more (`again`,
        which reads the latest copy) when it ends. A rollout's dozens of Deployment events cost
        one reconcile per burst plus one, and none is lost: whatever an event said, the run
        after it reads. `wait=True` (kopf's create/update/resume handler, which kopf retries on
        failure) waits for the running one and then runs `first` itself."""
        with self._state:
            if key in self._running:
                if not wait:
                    self._pending.add(key)
                    return
                while key in self._running:
                    self._state.wait()
            self._running.add(key)
            self._pending.discard(key)
        try:
            with self.lock_for(*key):
                first()
            while True:
                with self._state:  # the check and the release in one step: no request between
                    if key not in self._pending:
                        self._running.discard(key)
                        self._state.notify_all()
                        return
                    self._pending.discard(key)
                with self.lock_for(*key):
                    again()
        except BaseException:
            with self._state:
                self._running.discard(key)
                self._state.notify_all()
            raise


@dataclass
class Registry:
    """The API wrapper (made on first use), the watch caches, the reconcile coordination and
    the autoscaler's writer threads of one operator process."""

    dry_run: bool = False
    kube_factory: Callable[[], Kube] | None = None
    watched: WatchCache = field(default_factory=WatchCache)
    reconciles: Reconciles = field(default_factory=Reconciles)
    _kube: Kube | None = None
    _writers: ThreadPoolExecutor | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def kube(self) -> Kube:
        with self._guard:
            if self._kube is None:
                factory = self.kube_factory or (lambda: Kube(load_client(), self.dry_run))
                self._kube = factory()
            return self._kube

    def writers(self) -> ThreadPoolExecutor:
        with self._guard:
            if self._writers is None:
                self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="autoscale")
            return self._writers


def registry(memo: Mapping[str, Any] | Any) -> Registry:
    """The operator's registry from a handler's kopf memo."""
    found = memo.get("registry") if isinstance(memo, Mapping) else getattr(memo, "registry", None)
    if not isinstance(found, Registry):
        raise RuntimeError("no tokenscale Registry in kopf's memo: start with `tokenscale run`")
    return found


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

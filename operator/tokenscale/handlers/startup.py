"""Operator settings: keep all bookkeeping in status so user objects never drift."""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    settings.persistence.finalizer = "tokenscale.io/finalizer"
    settings.posting.level = 30  # warnings and errors only: our own Events carry the story
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    # A 429 names when to come back: a CRD installed moments ago answers "storage is
    # (re)initializing, retry after 1 s" for a few seconds, and waiting out the 10 s and 30 s
    # steps above instead would leave a service applied with its chart unserved for a minute.
    settings.networking.enforce_retry_after = True
    settings.batching.error_delays = [1, 5, 15, 60]

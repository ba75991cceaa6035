"""Whether a child still holds what tokenscale applied, from the watch's copy alone.

A server-side apply of an unchanged manifest stores nothing, but it is still a write request,
and each reconcile used to send one per child (plus a GET before each): about 12 API calls for
every event of every child, most of them the echo of tokenscale's own writes. Instead, the
adapter remembers, per child, the manifest it applied and the live values at the paths that
manifest sets; a watch event whose values at those paths are the same says nothing drifted.

Only the paths the manifest sets are compared, as server-side apply owns only those: the API
server's defaults (a container's `terminationMessagePath`), other managers' fields and status
changes are not drift. Values are compared as the API server returned them after the apply, so a
quantity it normalizes ("1024Mi" stored as "1Gi") is not mistaken for an edit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def project(live: Any, shape: Any) -> Any:
    """The part of `live` at the paths `shape` sets: a mapping's keys of `shape`, a list's
    elements by position (with the live length when it differs: an added or removed element is
    a change). `project({"a": 1, "b": 2}, {"a": 0})` is `{"a": 1}`."""
    if isinstance(shape, Mapping):
        if not isinstance(live, Mapping):
            return live
        return {key: project(live.get(key), value) for key, value in shape.items()}
    if isinstance(shape, list):
        if not isinstance(live, list):
            return live
        items = [project(item, part) for item, part in zip(live, shape, strict=False)]
        return items if len(live) == len(shape) else {"length": len(live), "items": items}
    return live


def fingerprint(value: Any) -> str:
    """A stable digest of a JSON value (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()

"""The shared model cache's layout, which the fill Job, the replicas' init container, the launcher
and the renderer all agree on.

A fill writes a model into `<cache>/<key>.partial/`, writes `COMPLETE_MARKER` there last, and then
renames the directory to `<cache>/<key>`: a directory named by its key is complete by
construction, so a fill that fails half way leaves nothing a replica reads.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

# Where every pod that uses the cache mounts its claim (the fill Job read-write, replicas
# read-only).
MODEL_CACHE_MOUNT: Final = "/model-cache"
COMPLETE_MARKER: Final = ".complete"
PARTIAL_SUFFIX: Final = ".partial"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def cache_key(source: str, revision: str | None) -> str:
    """The directory one model and revision fill: readable, and unique by its digest.

    >>> cache_key("s3://models/llama/8b", None)
    's3-models-llama-8b-1c860f61a33c'
    """
    identity = source if revision is None else f"{source}@{revision}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    slug = _UNSAFE.sub("-", identity.replace("://", "-")).strip("-.")[:80]
    return f"{slug}-{digest}"

"""Pod Security Admission "restricted", as every pod tokenscale creates carries it."""

from __future__ import annotations

from typing import Any, Final

# The worker image's user (worker_image/Dockerfile `USER 1000`); numeric so the kubelet can check
# runAsNonRoot without reading /etc/passwd.
WORKER_UID: Final = 1000


def restricted_container() -> dict[str, Any]:
    """No privilege escalation, no capabilities, non-root, and a read-only root filesystem (every
    path a container writes is a volume). A new dict each time: manifests are edited in place."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def restricted_pod() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "runAsGroup": WORKER_UID,
        # Volumes (a model claim included) are group-writable/readable by the worker.
        "fsGroup": WORKER_UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }

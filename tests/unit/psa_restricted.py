"""The Pod Security Standards' "restricted" profile (Kubernetes v1.31, pod-security-admission's
checks), as a function over a pod spec: what the API server of a namespace labelled
`pod-security.kubernetes.io/enforce=restricted` refuses, one message per violation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
     "projected", "secret"}
)  # fmt: skip
SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
     "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
)  # fmt: skip


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def _baseline(pod: dict[str, Any]) -> list[str]:
    problems = [f"host namespace {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {vol['name']} has a restricted type {sorted(kinds)}")
    for sysctl in (pod.get("securityContext") or {}).get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl['name']}")
    for c in _containers(pod):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"container {c['name']} is privileged")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"container {c['name']} uses a hostPort")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"container {c['name']} sets procMount")
    return problems


def _run_as_non_root(pod: dict[str, Any], c: dict[str, Any]) -> bool:
    own = (c.get("securityContext") or {}).get("runAsNonRoot")
    return bool(own if own is not None else (pod.get("securityContext") or {}).get("runAsNonRoot"))


def _seccomp(pod: dict[str, Any], c: dict[str, Any]) -> str | None:
    own = (c.get("securityContext") or {}).get("seccompProfile")
    chosen = own or (pod.get("securityContext") or {}).get("seccompProfile") or {}
    kind = chosen.get("type")
    return kind if isinstance(kind, str) else None


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every way `pod` (a PodSpec) breaks the restricted profile; empty when it passes."""
    problems = _baseline(pod)
    pod_uid = (pod.get("securityContext") or {}).get("runAsUser")
    if pod_uid == 0:
        problems.append("pod runs as uid 0")
    for c in _containers(pod):
        name, sc = c["name"], c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name} must set allowPrivilegeEscalation=false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"container {name} must drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"container {name} adds capabilities {caps['add']}")
        if not _run_as_non_root(pod, c):
            problems.append(f"container {name} must set runAsNonRoot=true")
        if sc.get("runAsUser") == 0:
            problems.append(f"container {name} runs as uid 0")
        if _seccomp(pod, c) not in ("RuntimeDefault", "Localhost"):
            problems.append(f"container {name} needs seccompProfile RuntimeDefault or Localhost")
    return problems

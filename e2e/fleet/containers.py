"""Run one of a pod's containers to completion as a local process, as a kubelet would: its volumes
mounted (a claim bound to a hostPath volume is that directory, an emptyDir a fresh one per pod),
its environment resolved (values and Secret keys), its command and arguments as rendered, with
each mount path in them read as the local directory it stands for.

Used for what runs to an end: the model cache's fill Job pods and the worker pods' init
containers. Serving containers are `workers.py`'s."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.fleet.cluster import ClusterView

# The worker image's console script, run from this checkout's environment.
IMAGE_COMMANDS = {"tokenscale-worker": [sys.executable, "-m", "tokenscale_worker.cli"]}


class PodNotRunnableError(RuntimeError):
    """A volume or variable the kubelet could not provide either (an unbound claim, a missing
    Secret key); the message names it."""


@dataclass(frozen=True)
class LocalContainer:
    argv: list[str]
    env: dict[str, str]
    mounts: dict[str, Path]  # mountPath in the pod -> local directory


def _volume_dirs(view: ClusterView, pod: dict[str, Any], scratch: Path) -> dict[str, Path]:
    namespace = pod["metadata"]["namespace"]
    dirs: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            path = view.claim_path(namespace, claim)
            if path is None:
                raise PodNotRunnableError(f"claim {claim} is not bound")
            dirs[volume["name"]] = Path(path)
        elif "emptyDir" in volume:
            dirs[volume["name"]] = scratch / volume["name"]
            dirs[volume["name"]].mkdir(parents=True, exist_ok=True)
    return dirs


def _local(value: str, mounts: dict[str, Path]) -> str:
    """A path inside a mount becomes the same path inside its local directory."""
    for mount_path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(local) + value[len(mount_path) :]
    return value


def _env(
    view: ClusterView, namespace: str, container: dict[str, Any], mounts: dict[str, Path]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            try:
                env[var["name"]] = view.secret_value(namespace, ref["name"], ref["key"])
            except (KeyError, LookupError) as err:
                raise PodNotRunnableError(f"secret {ref['name']} key {ref['key']}: {err}") from None
        elif "value" in var:
            env[var["name"]] = _local(str(var["value"]), mounts)
    return env


def local_container(
    view: ClusterView, pod: dict[str, Any], container: dict[str, Any], scratch: Path
) -> LocalContainer:
    volumes = _volume_dirs(view, pod, scratch)
    mounts = {
        m["mountPath"]: volumes[m["name"]]
        for m in container.get("volumeMounts") or []
        if m["name"] in volumes
    }
    # Only the pod's own words are read as paths inside its mounts. The image command's local
    # stand-in (this checkout's interpreter) is not: a checkout under /tmp, as CI's is, would
    # otherwise become a path inside the pod's /tmp emptyDir, and no fill could start.
    words = [
        _local(a, mounts) for a in (container.get("command") or []) + (container.get("args") or [])
    ]
    if words and words[0] in IMAGE_COMMANDS:
        words = IMAGE_COMMANDS[words[0]] + words[1:]
    return LocalContainer(
        words, _env(view, pod["metadata"]["namespace"], container, mounts), mounts
    )


async def run_to_completion(
    local: LocalContainer, log_path: Path, on_start: Callable[[int], None] | None = None
) -> int:
    """The exit code; the process is killed if the caller is cancelled (the pod went away).
    `on_start` gets the process id once it runs (for a test to look at a process that hangs)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *local.argv,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **local.env},
            # No preexec_fn: Python code between fork and exec can deadlock on a lock another
            # thread of the emulator held at the fork (two cold CI runs hung a fill there). These
            # processes end by themselves, and a cancelled run kills its process below.
        )
    if on_start is not None:
        on_start(proc.pid)
    try:
        return await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

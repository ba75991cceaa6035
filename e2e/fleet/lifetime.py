"""Child processes that end with their parent: on Linux a child started with `die_with_parent`
as its preexec_fn gets SIGTERM when the process that started it exits, even by SIGKILL, so an
interrupted test run leaves no workers, fleet emulator or Prometheus behind."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


# Loaded here, in the parent, once. preexec_fn runs in the child between fork and exec, where only
# the forking thread exists: a dlopen there waits forever for the loader's lock if another thread of
# the parent held it at the fork (the fleet emulator forks while its API-client threads run; the
# likely cause of a fill pod's process that hung with an empty log in a loaded CI run).
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """preexec_fn: ask the kernel for SIGTERM when the parent exits (no-op off Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

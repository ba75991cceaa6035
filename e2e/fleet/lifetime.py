"""Child processes that end with their parent: on Linux a child started with `die_with_parent`
as its preexec_fn gets SIGTERM when the process that started it exits, even by SIGKILL, so an
interrupted test run leaves no workers, fleet emulator or Prometheus behind."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: ask the kernel for SIGTERM when the parent exits (no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

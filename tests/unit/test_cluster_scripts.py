"""The set-up scripts under interruption: a missing binary fails naming `make setup` (up.sh never
builds), and an interrupted build leaves no orphan build and no held lock, so a second run
recovers.

`go` is replaced by a stand-in that sleeps where a build would run for minutes: what is under test
is the script's handling of its children and its lock, not Go, and a real cold build takes longer
than a unit test may (it is exercised by `make setup` in every CI run)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools import BUILD_SH, ROOT

UP_SH = ROOT / "e2e" / "cluster" / "up.sh"

STUB_GO = """#!/usr/bin/env bash
# Stand-in for go: `go [-C DIR] build` runs long (records its pid), the rest succeeds at once.
[[ "$1" == -C ]] && shift 2
if [[ "$1" == build ]]; then
  echo $$ >> "$STUB_PIDS"
  exec sleep 300
fi
exit 0
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An empty cache with a stand-in Prometheus, and `go` replaced by the stub."""
    cache = tmp_path / "cache"
    prom = cache / "tokenscale" / "bin" / "prometheus-debian"
    prom.mkdir(parents=True)
    (prom / "prometheus").write_text("#!/bin/sh\necho prometheus\n")
    (prom / "prometheus").chmod(0o755)
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "go").write_text(STUB_GO)
    (stub / "go").chmod(0o755)
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(cache),
        "PATH": f"{stub}:{os.environ['PATH']}",
        "STUB_PIDS": str(tmp_path / "go-build.pids"),
    }
    yield env
    for pid in stub_pids(env):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def stub_pids(env: dict[str, str]) -> list[int]:
    path = Path(env["STUB_PIDS"])
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def lock_is_free(path: Path) -> bool:
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def default_interrupt() -> None:
    """SIGINT as a terminal delivers it. A process started in the background by a non-interactive
    shell (a CI runner may start the suite so) inherits SIGINT ignored, and bash cannot trap a
    signal ignored on entry: the test is about the script's trap, not that inheritance."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_build(env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["bash", str(BUILD_SH)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, preexec_fn=default_interrupt,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not stub_pids(env):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the build never reached `go build`"
        time.sleep(0.05)
    return proc


def test_check_names_what_is_missing_and_the_command(sandbox: dict[str, str]) -> None:
    out = subprocess.run(["bash", str(BUILD_SH), "--check"], env=sandbox, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert out.returncode == 1
    assert "not built: kube-apiserver kube-controller-manager" in out.stderr
    assert "(run: make setup)" in out.stderr


def test_up_never_builds_and_names_make_setup(sandbox: dict[str, str]) -> None:
    out = subprocess.run(["bash", str(UP_SH)], env=sandbox, capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert out.returncode == 1
    assert "run 'make setup'" in out.stderr
    assert stub_pids(sandbox) == [], "up.sh started a build"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_build_leaves_no_orphan_and_no_lock(
    sandbox: dict[str, str], sig: signal.Signals
) -> None:
    proc = start_build(sandbox)
    lock = Path(sandbox["XDG_CACHE_HOME"]) / "tokenscale" / "build.lock"
    assert not lock_is_free(lock), "the build does not hold its lock"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    pids = stub_pids(sandbox)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], "a go build outlived the interrupted build.sh"
    assert lock_is_free(lock)


def test_a_killed_build_releases_its_lock_at_once(sandbox: dict[str, str]) -> None:
    # SIGKILL cannot be trapped: the lock must not live on in a child that inherited it.
    proc = start_build(sandbox)
    lock = Path(sandbox["XDG_CACHE_HOME"]) / "tokenscale" / "build.lock"
    proc.kill()
    proc.wait(timeout=30)
    assert lock_is_free(lock), "a child of the killed build.sh still holds build.lock"
    # And a second run goes ahead (it reaches `go build` again instead of waiting forever).
    second = start_build({**sandbox, "STUB_PIDS": sandbox["STUB_PIDS"] + ".2"})
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=30)

"""One service's reconciles run one at a time; child events that come meanwhile coalesce into one
more run, and a create/update waits for the running one. Threads are stepped with events, never
with sleeps."""

from __future__ import annotations

import threading

import pytest

from tokenscale.handlers.runtime import Reconciles

KEY = ("team-a", "chat")


class Blocking:
    """A reconcile that records each run and, on its first, waits until released."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, label: str) -> None:
        self.runs.append(label)
        if len(self.runs) == 1:
            self.started.set()
            assert self.release.wait(timeout=30), "never released"


def child_event(reconciles: Reconciles, work: Blocking, label: str) -> None:
    reconciles.reconcile_once(
        KEY, lambda: work.run(label), lambda: work.run(f"{label} again"), wait=False
    )


def test_events_during_a_reconcile_coalesce_into_one_more_run() -> None:
    work, reconciles = Blocking(), Reconciles()
    first = threading.Thread(target=child_event, args=(reconciles, work, "first"))
    first.start()
    assert work.started.wait(timeout=30)
    for n in range(5):  # a rollout's burst: each returns at once, marking the service pending
        child_event(reconciles, work, f"event {n}")
    assert work.runs == ["first"]
    work.release.set()
    first.join(timeout=30)
    assert not first.is_alive()
    assert work.runs == ["first", "first again"]  # one more run, reading the latest copy
    child_event(reconciles, work, "later")  # nothing under way: runs at once
    assert work.runs[-1] == "later"


def test_a_spec_change_waits_for_the_running_reconcile_and_runs_its_own() -> None:
    work, reconciles = Blocking(), Reconciles()
    first = threading.Thread(target=child_event, args=(reconciles, work, "child"))
    first.start()
    assert work.started.wait(timeout=30)
    update = threading.Thread(
        target=reconciles.reconcile_once,
        args=(KEY, lambda: work.run("update"), lambda: work.run("update again")),
        kwargs={"wait": True},
    )
    update.start()
    assert work.runs == ["child"]  # the update waits: one reconcile of a service at a time
    work.release.set()
    first.join(timeout=30)
    update.join(timeout=30)
    assert work.runs == ["child", "update"]


def test_a_failed_reconcile_frees_the_service() -> None:
    def broken() -> None:
        raise RuntimeError("API server went away")

    reconciles = Reconciles()
    with pytest.raises(RuntimeError):
        reconciles.reconcile_once(KEY, broken, broken, wait=False)
    ran: list[str] = []
    reconciles.reconcile_once(KEY, lambda: ran.append("next"), broken, wait=False)
    assert ran == ["next"]

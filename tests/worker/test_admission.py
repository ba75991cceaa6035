"""The pure cap-and-queue logic the gateway and the benchmark share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenscale_contract.retry_after import retry_after_s
from tokenscale_worker.admission import Admission, Verdict


def test_admits_up_to_cap_then_queues_then_rejects() -> None:
    a: Admission[str] = Admission(cap=2, queue_limit=1)
    assert [a.request(x) for x in "abcd"] == [
        Verdict.ADMITTED, Verdict.ADMITTED, Verdict.QUEUED, Verdict.REJECTED_QUEUE_FULL,
    ]  # fmt: skip
    assert (a.in_flight, a.queue_length) == (2, 1)
    assert a.release() == ["c"]
    assert (a.in_flight, a.queue_length) == (2, 0)


def test_fifo_and_no_overtaking() -> None:
    a: Admission[int] = Admission(cap=1, queue_limit=10)
    a.request(0)
    for i in range(1, 4):
        assert a.request(i) is Verdict.QUEUED
    assert [a.release(), a.release(), a.release()] == [[1], [2], [3]]


def test_lowering_cap_keeps_in_flight_and_pauses_admission() -> None:
    a: Admission[int] = Admission(cap=4, queue_limit=10)
    for i in range(4):
        a.request(i)
    assert a.set_limits(cap=2, queue_limit=10) == []
    assert a.in_flight == 4  # nobody is cut off
    assert a.request(9) is Verdict.QUEUED
    assert a.release() == [] and a.release() == []  # 4 -> 2 in flight, still at the new cap
    assert a.release() == [9]


def test_raising_cap_admits_queued_at_once() -> None:
    a: Admission[int] = Admission(cap=1, queue_limit=10)
    for i in range(4):
        a.request(i)
    assert a.set_limits(cap=3, queue_limit=10) == [1, 2]


def test_smaller_queue_limit_keeps_queued_requests() -> None:
    a: Admission[int] = Admission(cap=1, queue_limit=5)
    for i in range(4):
        a.request(i)
    a.set_limits(cap=1, queue_limit=1)
    assert a.queue_length == 3
    assert a.request(99) is Verdict.REJECTED_QUEUE_FULL


def test_drain_rejects_new_but_runs_queued() -> None:
    a: Admission[int] = Admission(cap=1, queue_limit=5)
    a.request(0)
    a.request(1)
    a.drain()
    assert a.request(2) is Verdict.REJECTED_DRAINING
    assert a.release() == [1]
    assert not a.idle
    assert a.release() == []
    assert a.idle


def test_cancel_removes_only_queued() -> None:
    a: Admission[int] = Admission(cap=1, queue_limit=5)
    a.request(0)
    a.request(1)
    assert a.cancel(1) and not a.cancel(1) and not a.cancel(0)


@pytest.mark.parametrize(("cap", "queue"), [(0, 1), (1, -1)])
def test_bad_limits(cap: int, queue: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        Admission(cap, queue)


def test_release_without_admission_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        Admission[int](1, 1).release()


@pytest.mark.parametrize(
    ("queue", "cap", "mean", "expected"),
    [(256, 32, 4.0, 32), (0, 8, 2.0, 1), (10_000, 1, 10.0, 60), (5, 5, 0.0, 1)],
)
def test_retry_after(queue: int, cap: int, mean: float, expected: int) -> None:
    assert retry_after_s(queue, cap, mean) == expected


@given(st.lists(st.tuples(st.sampled_from(["req", "rel", "cap"]), st.integers(1, 6)), max_size=80))
def test_invariants_hold_under_any_sequence(ops: list[tuple[str, int]]) -> None:
    a: Admission[int] = Admission(cap=3, queue_limit=4)
    admitted_order: list[int] = []
    for n, (op, value) in enumerate(ops):
        if op == "req":
            if a.request(n) is Verdict.ADMITTED:
                admitted_order.append(n)
        elif op == "rel" and a.in_flight:
            admitted_order += a.release()
        elif op == "cap":
            admitted_order += a.set_limits(value, 4)
        assert a.queue_length <= 4 or op == "cap"
        # Never admit beyond the cap except by lowering it under requests already running.
        assert a.in_flight <= max(a.cap, len(admitted_order))
        # FIFO: requests are admitted in the order they arrived.
        assert admitted_order == sorted(admitted_order)
        if a.in_flight < a.cap:
            assert a.queue_length == 0

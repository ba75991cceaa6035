"""The e2e timeline cannot hide a failure: a read that is no transient error stops it and is
raised to the test, and a window with no sample (or a gap longer than two ticks) fails instead of
letting an `all(...)` pass over nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from e2e.autoscale.helpers import TICK_GAP_S, Sample, Timeline


class GoneService:
    """Stands in for the API reads of a service that was deleted under the test."""

    def get(self) -> dict[str, Any]:
        raise AssertionError("team-a/chat is gone")

    def deployment(self) -> dict[str, Any]:
        return {}

    def condition(self, type_: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}


def sample(at: float) -> Sample:
    return Sample(at=at, replicas=1, ready=1, cap=4, slo_met="True", metrics="True", desired=1)


def test_a_failed_read_stops_the_timeline_and_reaches_the_test() -> None:
    timeline = Timeline(GoneService(), every=0.01).start()  # type: ignore[arg-type]
    assert timeline._thread is not None
    timeline._thread.join(5)
    with pytest.raises(AssertionError, match=r"stopped sampling.*is gone"):
        timeline.since(0.0)
    with pytest.raises(AssertionError, match="stopped sampling"):
        timeline.stop()


def test_a_window_without_samples_is_no_pass() -> None:
    timeline = Timeline(GoneService())  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="no sample"):
        timeline.between(100.0, 110.0)


def test_a_gap_longer_than_two_ticks_is_no_pass() -> None:
    timeline = Timeline(GoneService())  # type: ignore[arg-type]
    timeline.samples = [sample(100.0), sample(101.0), sample(101.0 + TICK_GAP_S + 1), sample(120)]
    with pytest.raises(AssertionError, match="sampling gap"):
        timeline.between(100.0, 120.0)
    timeline.samples = [sample(100.0 + i) for i in range(21)]
    assert len(timeline.between(100.0, 120.0)) == 21


def test_transient_errors_are_counted_not_fatal() -> None:
    class Flaky(GoneService):
        calls = 0

        def get(self) -> dict[str, Any]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise ConnectionResetError("reset by peer")
            return {"status": {}}

    timeline = Timeline(Flaky(), every=0.01).start()  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while not timeline.samples and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    timeline.stop()
    assert timeline.errors and "reset by peer" in timeline.errors[0]
    assert timeline.samples

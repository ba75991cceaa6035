"""The hostile-input suite's tally: each case records what the boundary did with it, and the run
ends with a table per boundary (tried / rejected clearly / read correctly / accepted silently /
crashed / lost / unclear). The tests assert each case; the table is the figure to quote.

    .venv/bin/pytest -q tests/hostile -p no:cacheprovider
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

OUTCOMES = (
    "rejected clearly",
    "read correctly",
    "accepted silently",
    "crashed",
    "lost",
    "unclear",
)
_TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)

Record = Callable[[str, str], None]


@pytest.fixture
def tally() -> Record:
    """record(boundary, outcome): count one case's outcome under its boundary."""

    def record(boundary: str, outcome: str) -> None:
        assert outcome in OUTCOMES, outcome
        _TALLY[boundary][outcome] += 1

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TALLY:
        return
    terminalreporter.write_sep("-", "hostile inputs per boundary")
    terminalreporter.write_line(f"{'boundary':<12} {'tried':>5} " + " ".join(OUTCOMES))
    for boundary, counts in sorted(_TALLY.items()):
        cells = " ".join(f"{counts[o]:>{len(o)}}" for o in OUTCOMES)
        terminalreporter.write_line(f"{boundary:<12} {sum(counts.values()):>5} {cells}")

"""`tokenscale bench --check-targets` never passes on a leg it could not run."""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenscale.bench import targets
from tokenscale.bench.traces import default_azure_trace


def test_a_missing_azure_trace_is_a_leg_not_run(tmp_path: Path) -> None:
    args = argparse.Namespace(azure_trace=str(tmp_path / "absent.csv"), seed=1)
    legs = dict(targets._standard(args, scenario=None))  # type: ignore[arg-type]
    assert "embedded" in legs and legs["embedded"] is not None
    assert legs["azure-conv x6"] is None


def test_ci_has_the_azure_trace_beside_the_checkout() -> None:
    # Where CI runs (a checkout with shared/data beside it) the leg must be there to run.
    data = default_azure_trace().parent
    if data.is_dir():
        assert default_azure_trace().is_file(), f"{default_azure_trace()} missing from {data}"

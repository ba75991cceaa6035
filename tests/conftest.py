"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def minimal_spec(**overrides: Any) -> dict[str, Any]:
    """A valid spec (camelCase, as users write it) with sections replaced by `overrides`."""
    spec: dict[str, Any] = {
        "model": {
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "architecture": "llama-3.1-8b",
        },
        "resources": {"gpu": "h100-80gb"},
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in EXAMPLES]

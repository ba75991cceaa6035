"""The model cache's fill state, its gate on replicas, and the cold start it implies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, lifecycle, model_cache, probes
from tokenscale.domain.capacity import Plan


def job(*conditions: tuple[str, str], failed: int = 0) -> dict[str, Any]:
    return {
        "status": {
            "failed": failed,
            "conditions": [{"type": t, "status": "True", "message": m} for t, m in conditions],
        }
    }


def test_fill_state_follows_the_job() -> None:
    assert model_cache.fill_state(None, "j").phase == "Filling"
    running = model_cache.fill_state(job(failed=2), "j")
    assert running.phase == "Filling" and "2 failed attempts, retrying" in running.message
    assert model_cache.fill_state(job(("Complete", "")), "j").phase == "Complete"
    failed = model_cache.fill_state(job(("Failed", "BackoffLimitExceeded"), failed=7), "j")
    assert failed.phase == "Failed"
    assert "BackoffLimitExceeded" in failed.message and "delete the Job" in failed.message


def test_the_gate_allows_the_first_replica_or_those_already_serving() -> None:
    filling = model_cache.FillState("Filling", "")
    assert model_cache.fill_gate(filling, 0) == 1
    assert model_cache.fill_gate(filling, 3) == 3
    assert model_cache.fill_gate(model_cache.FillState("Complete", ""), 0) is None
    assert model_cache.fill_gate(None, 0) is None


@pytest.mark.parametrize(
    ("mode", "current", "limit", "expected"),
    [
        ("auto", None, 1, 1),  # a new service with minReplicas 3 starts one replica
        ("auto", None, None, 3),
        ("auto", 1, 1, None),  # not pulled up to minReplicas while filling
        ("auto", 1, None, 3),
        ("off", 1, 1, None),
        ("off", 2, 2, None),
    ],
)
def test_the_lifecycle_bounds_respect_the_gate(
    mode: str, current: int | None, limit: int | None, expected: int | None
) -> None:
    spec = InferenceServiceSpec.model_validate(
        minimal_spec(scaling={"mode": mode, "minReplicas": 3, "maxReplicas": 8})
    )
    assert lifecycle.bounded_replicas(spec, current, limit) == expected


def test_the_cold_start_from_the_cache_is_the_read_plus_the_warm_up() -> None:
    spec = InferenceServiceSpec.model_validate(
        minimal_spec(
            model={
                "source": "s3://weights/llama-70b",
                "architecture": "llama-3.1-70b",
                "cache": {"storageClassName": "filestore"},
            },
            quantization={"method": "none"},
        )
    )
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    gib = probes.checkpoint_gib(spec, plan)
    estimate = probes.cache_cold_start_seconds(spec, plan)
    # Unset coldStartSeconds: the autoscaler plans with the cache's arithmetic; a stated value
    # wins; without a cache, 120 s.
    assert probes.cold_start_seconds(spec, plan) == estimate
    stated = spec.model_copy(
        update={"scaling": spec.scaling.model_copy(update={"cold_start_seconds": 45.0})}
    )
    assert probes.cold_start_seconds(stated, plan) == 45.0
    no_cache = spec.model_copy(update={"model": spec.model.model_copy(update={"cache": None})})
    assert probes.cold_start_seconds(no_cache, plan) == probes.DEFAULT_COLD_START_SECONDS
    assert estimate == pytest.approx(gib + probes.WARMUP_SECONDS, abs=0.1)  # 1 GiB/s
    # From the hub the same replica reads at 256 MiB/s: four times the read.
    hub = gib * 1024**3 / probes.LOAD_BYTES_PER_SECOND + probes.WARMUP_SECONDS
    assert hub - probes.WARMUP_SECONDS == pytest.approx(4 * (estimate - probes.WARMUP_SECONDS))
    # The claim tokenscale creates holds the checkpoint with room to spare.
    size = model_cache.claim_size(spec, plan)
    assert int(size.removesuffix("Gi")) >= gib * 1.2


def test_the_lifecycle_records_its_own_scale_for_the_autoscaler() -> None:
    """When the gate lifts the lifecycle handler scales to minReplicas; the scale subresource
    leaves no managedFields owner of spec.replicas, so without this record the autoscaler took
    the operator's own write for another client's (ScalingConflict, seen in the e2e)."""
    status = {"autoscaler": {"lastAppliedReplicas": 1, "serviceFactor": 1.1}}
    after = lifecycle.autoscaler_after_scale(status, 2)
    assert after == {"lastAppliedReplicas": 2, "serviceFactor": 1.1}
    assert lifecycle.autoscaler_after_scale({}, 2) is None

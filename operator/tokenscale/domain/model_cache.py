"""The shared model cache: one Job copies a model's weights onto a ReadWriteMany claim once per
model and revision, every replica mounts the claim read-only, and replicas scale past the first
only after the copy is complete (`fill_gate`).

Why: without it every new replica downloads the whole checkpoint (a 70B bf16 replica pulls
131.5 GiB from the hub at ~256 MiB/s: 9 minutes before it can serve), and N replicas starting
together pull it N times. With it the first fill pays the download once, and a replica's cold start
is the read from the shared volume plus the engine's warm-up (`probes.cache_cold_start_seconds`).

The layout on the claim (`<key>.partial/` renamed to `<key>/` when complete) is the contract
package's `model_cache` module: the worker image's `fill` and `wait-model` commands follow it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import names
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.pod_security import restricted_container, restricted_pod
from tokenscale.domain.probes import checkpoint_gib
from tokenscale_contract.model_cache import MODEL_CACHE_MOUNT, cache_key

Manifest = dict[str, Any]

# The claim holds the checkpoint plus tokenizer files and one partial copy's slack.
CLAIM_HEADROOM = 1.2
VOLUME = "model-cache-claim"
# A failed fill is retried by the Job controller with its exponential back-off (10 s, 20 s, ...);
# a resumed fill keeps the objects it finished.
FILL_BACKOFF_LIMIT = 6
FILL_COMPONENT = "model-fill"
FILL_LABEL = "tokenscale.io/model-fill"


def enabled(spec: InferenceServiceSpec) -> bool:
    return spec.model.cache is not None


def key(spec: InferenceServiceSpec) -> str:
    """The directory on the claim that holds this model and revision."""
    return cache_key(spec.model.source, spec.model.revision)


def claim_name(ref: ServiceRef, spec: InferenceServiceSpec) -> str:
    cache = spec.model.cache
    if cache is not None and cache.claim_name:
        return cache.claim_name
    return f"{ref.name}-model-cache"


def claim_size(spec: InferenceServiceSpec, plan: Plan) -> str:
    cache = spec.model.cache
    if cache is not None and cache.size:
        return cache.size
    return f"{math.ceil(checkpoint_gib(spec, plan) * CLAIM_HEADROOM) + 2}Gi"


def make_claim(ref: ServiceRef, spec: InferenceServiceSpec, plan: Plan) -> Manifest | None:
    """The claim tokenscale creates from spec.model.cache.storageClassName; None when the user
    named an existing claim (or no cache is set)."""
    cache = spec.model.cache
    if cache is None or not cache.storage_class_name:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": names.child_metadata(ref, claim_name(ref, spec), component="model-cache"),
        "spec": {
            # Replicas on many nodes mount it at once.
            "accessModes": ["ReadWriteMany"],
            "storageClassName": cache.storage_class_name,
            "resources": {"requests": {"storage": claim_size(spec, plan)}},
        },
    }


def _fill_env(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if spec.model.s3_endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": spec.model.s3_endpoint_url})
    creds = spec.secrets.s3_credentials
    if creds is not None:
        env += [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": creds.name, "key": k}}}
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    token = spec.secrets.hub_token
    if token is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}},
            }
        )
    return env


def _fill_pod(ref: ServiceRef, spec: InferenceServiceSpec) -> Manifest:
    args = ["--source", spec.model.source, "--cache-dir", MODEL_CACHE_MOUNT]
    if spec.model.revision:
        args += ["--revision", spec.model.revision]
    container = {
        "name": "fill",
        "image": spec.engine.image,
        "command": ["tokenscale-worker", "fill"],
        "args": args,
        "env": _fill_env(spec),
        # A copy is network- and disk-bound: one core and a few buffers.
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        },
        "volumeMounts": [
            {"name": VOLUME, "mountPath": MODEL_CACHE_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": restricted_container(),
    }
    return {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            {"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name(ref, spec)}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod(),
    }


def fill_job_name(ref: ServiceRef, spec: InferenceServiceSpec) -> str:
    """Named by everything in its pod: a Job's template cannot change, so a new source,
    revision, image or credential makes a new Job (and the old one stays as a record)."""
    digest = hashlib.sha256(json.dumps(_fill_pod(ref, spec), sort_keys=True).encode()).hexdigest()[
        :10
    ]
    # The Job's name becomes a label value of its pods: at most 63 characters.
    return f"{ref.name[:47]}-fill-{digest}"


def make_fill_job(ref: ServiceRef, spec: InferenceServiceSpec) -> Manifest | None:
    if not enabled(spec):
        return None
    pod_labels = {
        **{k: v for k, v in names.labels(ref, FILL_COMPONENT).items() if k != names.SERVICE_LABEL},
        # Not the service label: the autoscaler counts pods with it as replicas.
        FILL_LABEL: ref.name,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": names.child_metadata(ref, fill_job_name(ref, spec), FILL_COMPONENT),
        "spec": {
            "backoffLimit": FILL_BACKOFF_LIMIT,
            "template": {"metadata": {"labels": pod_labels}, "spec": _fill_pod(ref, spec)},
        },
    }


def replica_volume(ref: ServiceRef, spec: InferenceServiceSpec) -> Manifest:
    return {
        "name": VOLUME,
        "persistentVolumeClaim": {"claimName": claim_name(ref, spec), "readOnly": True},
    }


def replica_mount() -> Manifest:
    return {"name": VOLUME, "mountPath": MODEL_CACHE_MOUNT, "readOnly": True}


def wait_container(spec: InferenceServiceSpec) -> Manifest:
    """The replicas' init container: the engine starts only on a complete copy."""
    return {
        "name": "wait-for-model",
        "image": spec.engine.image,
        "command": ["tokenscale-worker", "wait-model"],
        "args": ["--cache-dir", MODEL_CACHE_MOUNT, "--key", key(spec)],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [replica_mount()],
        "securityContext": restricted_container(),
    }


# ---- the fill's state and the gate ------------------------------------------------------------

FillPhase = Literal["Filling", "Complete", "Failed"]


@dataclass(frozen=True)
class FillState:
    phase: FillPhase
    message: str


def fill_state(job: dict[str, Any] | None, job_name: str) -> FillState:
    """What the fill Job's status says (None: not created or not seen yet)."""
    if job is None:
        return FillState("Filling", f"fill Job {job_name} is being created")
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return FillState("Complete", f"fill Job {job_name} completed")
        if cond.get("type") == "Failed":
            why = cond.get("message") or cond.get("reason") or "failed"
            return FillState(
                "Failed",
                f"fill Job {job_name} failed ({why}); read its pods' logs, fix the source or "
                f"credentials, then delete the Job and tokenscale runs it again",
            )
    failed = int(status.get("failed") or 0)
    retry = f" ({failed} failed attempt{'s' if failed != 1 else ''}, retrying)" if failed else ""
    return FillState("Filling", f"fill Job {job_name} is copying the weights{retry}")


def fill_gate(state: FillState | None, current: int) -> int | None:
    """The most replicas allowed while the cache is not filled: the first replica (which waits
    for the copy in its init container), or the replicas already serving an earlier copy; None
    when there is no limit."""
    if state is None or state.phase == "Complete":
        return None
    return max(1, current)

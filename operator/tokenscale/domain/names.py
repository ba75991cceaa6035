"""Every name, label and selector tokenscale gives the objects it creates, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenscale.api.v1alpha1 import API_VERSION, KIND

FIELD_MANAGER = "tokenscale"
SERVICE_LABEL = "tokenscale.io/service"
GPU_RESOURCE = "nvidia.com/gpu"
WORKER_CONTAINER = "worker"
PORT_NAME = "http"


@dataclass(frozen=True)
class ServiceRef:
    """The InferenceService an object belongs to (uid for owner references)."""

    name: str
    namespace: str
    uid: str = ""
    generation: int = 0


def deployment_name(ref: ServiceRef) -> str:
    return ref.name


def service_name(ref: ServiceRef) -> str:
    return ref.name


def pdb_name(ref: ServiceRef) -> str:
    return ref.name


def podmonitor_name(ref: ServiceRef) -> str:
    return ref.name


def tuning_configmap_name(ref: ServiceRef) -> str:
    return f"{ref.name}-tuning"


def selector_labels(ref: ServiceRef) -> dict[str, str]:
    """The immutable Deployment selector: only the service label, so label changes never need
    a Deployment replacement."""
    return {SERVICE_LABEL: ref.name}


def labels(ref: ServiceRef, component: str = "inference") -> dict[str, str]:
    """Standard app.kubernetes.io labels plus tokenscale.io/service."""
    return {
        "app.kubernetes.io/name": "tokenscale-worker",
        "app.kubernetes.io/instance": ref.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "tokenscale",
        "app.kubernetes.io/managed-by": "tokenscale",
        SERVICE_LABEL: ref.name,
    }


def owner_reference(ref: ServiceRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(ref: ServiceRef, name: str, component: str = "inference") -> dict[str, Any]:
    """Name, namespace, labels and the owner reference the garbage collector follows."""
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": labels(ref, component),
        "ownerReferences": [owner_reference(ref)],
    }

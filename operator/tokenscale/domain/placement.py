"""Which nodes hold a GPU kind: the node label the pods require, and how a node's labels name its
GPU kind back (the autoscaler counts free GPUs per kind).

By default pods select nodes by the label NVIDIA's GPU Feature Discovery (part of the GPU
operator) writes, `nvidia.com/gpu.product` (catalog.GFD_PRODUCTS). Clouds that label differently
(GKE: `cloud.google.com/gke-accelerator=nvidia-l4`) override the key and the accepted values
through the chart (`gpuNodes.*` -> TOKENSCALE_GPU_NODE_* variables, read by `from_env`).

A nodeSelector cannot say "either of these products", so the GPU requirement is a required
nodeAffinity term with operator In; the user's own nodeSelector still applies beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenscale_contract import catalog

GFD_PRODUCT_LABEL = "nvidia.com/gpu.product"
GFD_COUNT_LABEL = "nvidia.com/gpu.count"
# The taint the GPU operator's docs and most managed clouds put on GPU nodes.
GPU_TAINT_KEY = "nvidia.com/gpu"

LABEL_ENV = "TOKENSCALE_GPU_NODE_LABEL"
VALUES_ENV = "TOKENSCALE_GPU_NODE_VALUES"
TOLERATION_ENV = "TOKENSCALE_GPU_TOLERATION"


def _gfd_values() -> dict[str, tuple[str, ...]]:
    return dict(catalog.GFD_PRODUCTS)


@dataclass(frozen=True)
class GpuPlacement:
    """The node label that names a node's GPU and the values accepted for each GPU kind.

    A kind without values under a label other than GFD's is matched by its own id, so
    `label: tokenscale.io/gpu` alone selects nodes labelled `tokenscale.io/gpu=l4-24gb`.
    """

    label: str = GFD_PRODUCT_LABEL
    values: Mapping[str, tuple[str, ...]] = field(default_factory=_gfd_values)
    # Add a toleration for the `nvidia.com/gpu` NoSchedule taint to every worker pod.
    tolerate_gpu_taint: bool = True

    def accepted(self, kind: str) -> tuple[str, ...]:
        """Label values a node of this GPU kind may carry, e.g. l4-24gb -> ('NVIDIA-L4',)."""
        found = self.values.get(kind)
        return found if found else (kind,)

    def kind_of(self, node_labels: Mapping[str, str]) -> str | None:
        """The catalog GPU kind a node holds, or None when its label names no known kind
        (an H100 PCIe under the default map: slower memory than the h100-80gb SXM figures)."""
        value = node_labels.get(self.label)
        if value is None:
            return None
        for kind in catalog.GPUS:
            if value in self.accepted(kind):
                return kind
        return None

    def requirement(self, kind: str) -> dict[str, Any]:
        """The nodeAffinity match expression for one GPU kind."""
        return {"key": self.label, "operator": "In", "values": list(self.accepted(kind))}

    def tolerations(self) -> list[dict[str, Any]]:
        if not self.tolerate_gpu_taint:
            return []
        return [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]


DEFAULT_PLACEMENT = GpuPlacement()


def _parse_values(raw: str) -> dict[str, tuple[str, ...]]:
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise ValueError(
            f'{VALUES_ENV} is not JSON ({err}); write e.g. {{"l4-24gb": ["nvidia-l4"]}}'
        ) from None
    if not isinstance(doc, dict):
        raise ValueError(f"{VALUES_ENV} must be a JSON object of GPU kind -> list of label values")
    parsed: dict[str, tuple[str, ...]] = {}
    for kind, values in doc.items():
        if kind not in catalog.GPUS:
            known = ", ".join(sorted(catalog.GPUS))
            raise ValueError(f"{VALUES_ENV}: unknown GPU kind {kind!r}; known kinds: {known}")
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v for v in values)
        ):
            raise ValueError(f"{VALUES_ENV}: {kind} must map to a non-empty list of strings")
        parsed[kind] = tuple(values)
    return parsed


def from_env(env: Mapping[str, str]) -> GpuPlacement:
    """The placement the chart configured; a malformed variable fails start-up naming it.

    The values map is laid over GFD's defaults when the label is GFD's, and replaces them when
    the label is another (GFD product names mean nothing under a cloud's own label)."""
    label = env.get(LABEL_ENV) or GFD_PRODUCT_LABEL
    overrides = _parse_values(env[VALUES_ENV]) if env.get(VALUES_ENV) else {}
    base = _gfd_values() if label == GFD_PRODUCT_LABEL else {}
    toleration = env.get(TOLERATION_ENV, "on").lower()
    if toleration not in ("on", "off", "true", "false"):
        raise ValueError(f"{TOLERATION_ENV}={toleration!r} must be on or off")
    return GpuPlacement(
        label=label,
        values={**base, **overrides},
        tolerate_gpu_taint=toleration in ("on", "true"),
    )

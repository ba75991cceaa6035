"""`InferenceService` (tokenscale.io/v1alpha1): the spec a user writes and the status tokenscale
reports.

These pydantic models are the only source of the CRD schema (`tokenscale crds` turns them into
`crds/` and the chart's CRD templates), of `kubectl explain` text (every field's description) and
of the operator's own parsing. Cross-field rules are CEL (`x-kubernetes-validations`) so the API
server rejects a bad spec before tokenscale ever sees it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tokenscale.api.v1alpha1.base import DEFAULT_WORKER_IMAGE, DNS1035_LABEL, Rule, _Model
from tokenscale.api.v1alpha1.objectives import BatchTuningSpec, ScalingMode, ScalingSpec, SloSpec
from tokenscale.api.v1alpha1.spec import (
    CustomArchitecture,
    EngineSpec,
    GpuKindId,
    InferenceServiceSpec,
    ModelArchId,
    ModelSpec,
    QuantizationSpec,
    QuantMethod,
    ResourcesSpec,
    SecretKeyRef,
    SecretsSpec,
    Toleration,
)
from tokenscale.api.v1alpha1.status import (
    Condition,
    ConditionType,
    DecisionRecord,
    InferenceServiceStatus,
    ObservedStatus,
    PlanStatus,
)

GROUP = "tokenscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAMES = ["tsvc"]


class InferenceService(_Model):
    """InferenceService runs one model on vLLM workers held to a latency objective at the lowest
    GPU cost."""

    # On the whole object: CEL may read metadata.name only from the root.
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "size(self.metadata.name) <= 52",
            "metadata.name must be at most 52 characters: it also names the Service, the "
            "Deployment and its pods",
        ),
        Rule(
            "self.metadata.name.matches('" + DNS1035_LABEL + "')",
            "metadata.name must be a DNS-1035 label, as it names the Service: lowercase letters, "
            "digits and -, starting with a letter and ending with a letter or digit (e.g. "
            "llama-chat, not 1abc or a.b)",
        ),
    )

    api_version: Literal["tokenscale.io/v1alpha1"] = Field(default="tokenscale.io/v1alpha1")
    kind: Literal["InferenceService"] = Field(default="InferenceService")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the service is serving.",
    },
    {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".status.replicas",
        "description": "Replicas that exist.",
    },
    {
        "name": "Desired",
        "type": "integer",
        "jsonPath": ".status.desiredReplicas",
        "description": "Replicas tokenscale wants.",
        "priority": 1,
    },
    {
        "name": "TTFT-P95",
        "type": "number",
        "jsonPath": ".status.observed.ttftSeconds",
        "description": "Time to first token in seconds at spec.slo.percentile (p95 unless set), "
        "over the Prometheus window, gateway queue wait included; empty when SLO-Met says "
        "NoMetrics or NoTraffic.",
    },
    {
        "name": "SLO-Met",
        "type": "string",
        "jsonPath": ".status.sloMet",
        "description": "True or False as the SLOMet condition says; NoMetrics or NoTraffic when "
        "it cannot say.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


__all__ = [
    "API_VERSION",
    "DEFAULT_WORKER_IMAGE",
    "GROUP",
    "KIND",
    "PLURAL",
    "PRINTER_COLUMNS",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "BatchTuningSpec",
    "Condition",
    "ConditionType",
    "CustomArchitecture",
    "DecisionRecord",
    "EngineSpec",
    "GpuKindId",
    "InferenceService",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "ModelArchId",
    "ModelSpec",
    "ObservedStatus",
    "PlanStatus",
    "QuantMethod",
    "QuantizationSpec",
    "ResourcesSpec",
    "Rule",
    "ScalingMode",
    "ScalingSpec",
    "SecretKeyRef",
    "SecretsSpec",
    "SloSpec",
    "Toleration",
]

"""core/v1 Affinity as strict models (list and string sizes bounded so the API server accepts the
cost of the CEL rules on match expressions), so the CRD carries its structural schema and a junk
`affinity` is refused with the field named instead of reaching the Deployment (field names and
operators as in the Kubernetes API reference, v1.31)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from tokenscale.api.v1alpha1.base import Rule, _Model


def _key() -> Any:
    return Field(min_length=1, max_length=317, description="Label or field key.")


def _weight() -> Any:
    return Field(ge=1, le=100, description="Weight 1-100 added to a node's score when it matches.")


_VALUES_RULE = (
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
    "self.operator in ['Exists', 'DoesNotExist'] ? (!has(self.values) || size(self.values) == 0) "
    ": (has(self.values) && size(self.values) == 1 && self.values[0].matches('^-?[0-9]+$'))"
)
_VALUES_MESSAGE = (
    "spec.resources.affinity: a match expression with operator In or NotIn needs values; "
    "Exists and DoesNotExist take none; Gt and Lt take exactly one integer"
)


class NodeSelectorRequirement(_Model):
    """A node label (or field) test."""

    RULES: ClassVar[tuple[Rule, ...]] = (Rule(_VALUES_RULE, _VALUES_MESSAGE),)

    key: str = _key()
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In, NotIn, Exists, DoesNotExist, Gt or Lt."
    )
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=64,
        description="Values to test (label values, at most 63 characters).",
    )


class NodeSelectorTerm(_Model):
    """Node tests that must all hold."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Tests on node labels."
    )
    match_fields: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Tests on node fields."
    )


class NodeSelector(_Model):
    """Node selector terms, any of which may match."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=16, description="Terms ORed together."
    )


class PreferredSchedulingTerm(_Model):
    """A weighted node preference."""

    weight: int = _weight()
    preference: NodeSelectorTerm = Field(description="The node test.")


class NodeAffinity(_Model):
    """Node affinity scheduling rules."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Nodes the pods must land on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        Field(default=None, max_length=16, description="Nodes the pods prefer.")
    )


class LabelSelectorRequirement(_Model):
    """A label test."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
            "(!has(self.values) || size(self.values) == 0)",
            "spec.resources.affinity: a label selector expression with operator In or NotIn "
            "needs values; Exists and DoesNotExist take none",
        ),
    )

    key: str = _key()
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=64,
        description="Values to test (label values, at most 63 characters).",
    )


class LabelSelector(_Model):
    """A label query over pods or namespaces."""

    match_labels: dict[str, str] | None = Field(default=None, description="Labels to match.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Label tests that must all hold."
    )


class PodAffinityTerm(_Model):
    """Pods (by label) that must or must not share a topology domain with these pods."""

    label_selector: LabelSelector | None = Field(default=None, description="Pods to consider.")
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces to consider."
    )
    namespaces: list[str] | None = Field(
        default=None, max_length=64, description="Namespace names to consider."
    )
    topology_key: str = Field(
        min_length=1, max_length=317, description="Node label naming the topology domain."
    )
    match_label_keys: list[str] | None = Field(
        default=None, max_length=64, description="Pod label keys merged into labelSelector."
    )
    mismatch_label_keys: list[str] | None = Field(
        default=None, max_length=64, description="Pod label keys excluded via labelSelector."
    )


class WeightedPodAffinityTerm(_Model):
    """A weighted pod (anti-)affinity preference."""

    weight: int = _weight()
    pod_affinity_term: PodAffinityTerm = Field(description="The pod affinity term.")


class PodAffinity(_Model):
    """Pod affinity (or anti-affinity) scheduling rules."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, max_length=16, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        Field(default=None, max_length=16, description="Terms preferred, by weight.")
    )


class Affinity(_Model):
    """Pod scheduling constraints, as core/v1 Affinity."""

    node_affinity: NodeAffinity | None = Field(default=None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(default=None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(default=None, description="Pod anti-affinity.")

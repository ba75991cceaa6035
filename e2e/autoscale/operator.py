"""The operator for the autoscaling suite and the scale benchmark: `tokenscale run` as a local
process with the chart's RBAC, under a ServiceAccount of its own.

The account is bound to the chart's ClusterRoles (so it has exactly the chart's permissions) but
lives outside the Helm release: a suite beside this one that uninstalls and reinstalls the chart
recreates the chart's ServiceAccount, which would revoke a token minted for it mid-run."""

from __future__ import annotations

from dataclasses import dataclass

from e2e.conftest import install_chart
from e2e.harness import (
    RELEASE,
    Cluster,
    Operator,
    service_account_kubeconfig,
)

ACCOUNT = "tokenscale-as-e2e"
ACCOUNT_NAMESPACE = "as-operator"
CHART_CLUSTER_ROLES = (RELEASE, f"{RELEASE}-cluster-reads")


def ensure_chart(cluster: Cluster) -> None:
    """Install or upgrade the chart (CRD, ClusterRoles): a cluster kept from an earlier checkout
    must not serve an older CRD or RBAC than the operator under test (an upgrade to the same
    chart changes nothing)."""
    install_chart(cluster)


def ensure_account(cluster: Cluster) -> None:
    docs = [
        f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ACCOUNT_NAMESPACE}}}",
        "apiVersion: v1\nkind: ServiceAccount\n"
        f"metadata: {{name: {ACCOUNT}, namespace: {ACCOUNT_NAMESPACE}}}",
    ]
    for role in CHART_CLUSTER_ROLES:
        docs.append(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
            f"metadata: {{name: {ACCOUNT}-{role}}}\n"
            f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n"
            f"subjects: [{{kind: ServiceAccount, name: {ACCOUNT}, "
            f"namespace: {ACCOUNT_NAMESPACE}}}]"
        )
    cluster.kubectl("apply", "-f", "-", stdin="\n---\n".join(docs))


@dataclass
class AutoscaleOperator(Operator):
    """`Operator` from the harness, run under ACCOUNT instead of the chart's account."""

    def kubeconfig(self) -> str:
        ensure_account(self.cluster)
        return service_account_kubeconfig(self.cluster, ACCOUNT, ACCOUNT_NAMESPACE)

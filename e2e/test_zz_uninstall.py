"""Runs last (file order): uninstalling the release keeps the CRD and every InferenceService when
crds.keep is set, and a reinstall picks them up again."""

from __future__ import annotations

from e2e.conftest import install_chart
from e2e.harness import RELEASE, ROOT, SYSTEM_NAMESPACE, Cluster, Operator, wait_for

CHART = str(ROOT / "charts" / "tokenscale")


def test_uninstall_keeps_crds_and_services_then_reinstall(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    from e2e.test_lifecycle import small_service

    cluster.apply(small_service("kept"), namespace)
    wait_for("kept exists", lambda: cluster.get("inferenceservice", "kept", namespace), timeout=30)
    operator.stop()
    cluster.helm(
        "upgrade",
        RELEASE,
        CHART,
        "-n",
        SYSTEM_NAMESPACE,
        "--reuse-values",
        "--set",
        "podMonitor.enabled=false",
    )
    cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, "--wait")
    try:
        crd = cluster.get("crd", "inferenceservices.tokenscale.io")
        assert crd is not None, "crds.keep=true must keep the CRD"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert cluster.get("inferenceservice", "kept", namespace) is not None
        assert cluster.get("clusterrole", RELEASE) is None
    finally:
        install_chart(cluster)
        operator.start()
    wait_for(
        "kept reconciled again", lambda: cluster.condition("kept", namespace, "Ready"), timeout=60
    )

"""The Helm chart against the real cluster: install, upgrade, uninstall with CRDs kept, a bad
value refused by values.schema.json, and RBAC that refuses what the operator does not need."""

from __future__ import annotations

from e2e.harness import RELEASE, ROOT, SYSTEM_NAMESPACE, Cluster, Operator

CHART = str(ROOT / "charts" / "tokenscale")
ACCOUNT = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{RELEASE}"


def can(cluster: Cluster, *args: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", *args, "--as", ACCOUNT, check=False)
    return proc.stdout.strip() == "yes"


def test_rbac_allows_exactly_what_the_operator_uses(cluster: Cluster, operator: Operator) -> None:
    assert can(cluster, "patch", "deployments.apps", "-n", "default")
    assert can(cluster, "patch", "deployments.apps", "--subresource=scale", "-n", "default")
    assert can(
        cluster, "patch", "inferenceservices.tokenscale.io", "--subresource=status", "-n", "default"
    )
    assert can(cluster, "create", "events", "-n", "default")
    assert not can(cluster, "delete", "nodes")
    assert not can(cluster, "get", "secrets", "-n", "kube-system")
    assert not can(cluster, "get", "secrets", "-n", "default")
    assert not can(cluster, "delete", "deployments.apps", "-n", "default")
    assert not can(cluster, "patch", "inferenceservices.tokenscale.io", "-n", "default")
    assert not can(cluster, "create", "pods", "-n", "default")


def test_bad_value_fails_install_with_a_clear_message(cluster: Cluster) -> None:
    proc = cluster.helm(
        "install",
        "bad",
        CHART,
        "-n",
        "default",
        "--set",
        "prometheus.url=nope",
        "--dry-run",
        check=False,
    )
    assert proc.returncode != 0
    assert "prometheus/url" in proc.stderr and "https?://" in proc.stderr


def test_second_release_without_crds_installs_and_uninstalls(
    cluster: Cluster, operator: Operator
) -> None:
    ns = cluster.new_namespace("lc-chart-two")
    try:
        cluster.helm(
            "install",
            "two",
            CHART,
            "-n",
            ns,
            "--set",
            "crds.enabled=false",
            "--set",
            "replicaCount=0",
            "--set",
            f"watchNamespaces={{{ns}}}",
            "--wait",
        )
        assert cluster.get("role", "two-tokenscale", ns) is not None
        cluster.helm("upgrade", "two", CHART, "-n", ns, "--reuse-values", "--set", "logLevel=debug")
        dep = cluster.get("deployment", "two-tokenscale", ns)
        env = [] if dep is None else dep["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "TOKENSCALE_LOG_LEVEL", "value": "debug"} in env
        cluster.helm("uninstall", "two", "-n", ns, "--wait")
        assert cluster.get("role", "two-tokenscale", ns) is None
        assert cluster.get("crd", "inferenceservices.tokenscale.io") is not None
    finally:
        cluster.delete_namespace(ns)

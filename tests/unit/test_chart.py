"""The Helm chart rendered by the real helm binary: lint, security settings, least-privilege RBAC,
commented values and the values schema."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.tools import cluster_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tokenscale"


def helm_binary() -> str:
    return cluster_tool("helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=check)


def render(*sets: str) -> list[dict[str, Any]]:
    args = ["template", "t", str(CHART), "--namespace", "ops"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_helm_lint() -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART)).stdout


def test_operator_pod_is_hardened() -> None:
    dep = next(d for d in render() if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]
    assert container["args"][0] == "run"


def test_rbac_has_no_wildcards_and_no_secrets() -> None:
    for doc in render():
        for rule in doc.get("rules") or []:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
            assert "secrets" not in rule["resources"]
            assert "delete" not in rule["verbs"]


def test_watch_namespaces_gives_namespaced_roles() -> None:
    kinds = [d["kind"] for d in render("watchNamespaces={a,b}")]
    assert kinds.count("Role") == 2 and kinds.count("RoleBinding") == 2
    assert kinds.count("ClusterRole") == 1  # only the cluster-wide reads


def test_crds_gated_and_kept() -> None:
    crd = next(d for d in render() if d["kind"] == "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    not_kept = next(d for d in render("crds.keep=false") if d["kind"] == "CustomResourceDefinition")
    assert "annotations" not in not_kept["metadata"]
    assert all(d["kind"] != "CustomResourceDefinition" for d in render("crds.enabled=false"))


def test_optional_podmonitor_and_dashboard() -> None:
    kinds = [d["kind"] for d in render("podMonitor.enabled=true", "dashboard.enabled=true")]
    assert "PodMonitor" in kinds
    cm = next(d for d in render("dashboard.enabled=true") if d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["tokenscale.json"])["uid"] == "tokenscale"


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_][\w-]*:", line):
            assert i > 0 and lines[i - 1].strip().startswith("#"), f"uncommented key: {line!r}"


def test_values_match_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("prometheus.url=nope", "prometheus/url"),
        ("replicaCount=2", "replicaCount"),
        ("crds.keep=maybe", "crds/keep"),
        ("logLevel=trace", "logLevel"),
        ("unknownKey=1", "unknownKey"),
    ],
)
def test_bad_values_fail_with_a_clear_message(setting: str, message: str) -> None:
    proc = helm("template", "t", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_operator_dockerfile_matches_the_chart() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", text, re.M)
    assert 'ENTRYPOINT ["tokenscale"]' in text
    assert re.search(r"^USER 65532", text, re.M)
    dep = next(d for d in render() if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


def operator_env(*sets: str) -> dict[str, str]:
    dep = next(d for d in render(*sets) if d["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_log_level_and_format_reach_the_operator() -> None:
    env = operator_env()
    assert (env["TOKENSCALE_LOG_LEVEL"], env["TOKENSCALE_LOG_FORMAT"]) == ("info", "text")
    env = operator_env("logLevel=warning", "logFormat=json")
    assert (env["TOKENSCALE_LOG_LEVEL"], env["TOKENSCALE_LOG_FORMAT"]) == ("warning", "json")


@pytest.mark.parametrize(
    ("setting", "message"),
    [("logFormat=yaml", "logFormat"), ("logLevel=verbose", "logLevel")],
)
def test_bad_log_values_fail_before_anything_is_created(setting: str, message: str) -> None:
    proc = helm("template", "t", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0 and message in proc.stderr

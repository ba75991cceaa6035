"""A real kube-apiserver + etcd for handler tests, started in seconds (controller-runtime's envtest
done in Python): no kwok, no scheduler, no controller-manager, so nothing but the handlers under
test writes to the objects they own. Deployments get no pods and no status, and deleted owners
leave their children behind (no garbage collector): the kwok e2e tests those.

Two users: `admin` (the tests' own reads and kubectl edits) and `tokenscale` (the operator's
client). The audit log records every request the operator's user makes, at the moment the API
server receives it, so a test can count the API calls one reconcile costs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tests.tools import ROOT, cluster_tool

T = TypeVar("T")
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
OPERATOR_USER = "tokenscale"
READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
START_TIMEOUT_S = 60.0  # a deadline for readiness, not a pause: the loop polls /readyz
# Only what the operator's user sends, logged when the request arrives (before any response
# reaches the client, so a count read right after a call is complete).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["ResponseStarted", "ResponseComplete", "Panic"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}
# The Prometheus operator's PodMonitor, reduced to what the API server needs to store one: the
# lifecycle handler renders a PodMonitor only where the kind is served.
PODMONITOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "PodMonitor", "plural": "podmonitors", "singular": "podmonitor"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@dataclass(frozen=True)
class AuditCount:
    """API requests by kind of call: reads (get, list, discovery) and writes."""

    reads: int
    writes: int
    calls: tuple[str, ...]  # "verb resource[/subresource]" in the order they arrived

    def summary(self) -> str:
        tally = ", ".join(f"{n}x {call}" for call, n in sorted(Counter(self.calls).items()))
        return f"{self.reads} reads, {self.writes} writes ({tally})"


@dataclass(frozen=True)
class ControlPlane:
    url: str
    ca_file: Path
    tokens: dict[str, str]  # user -> bearer token
    workdir: Path
    audit_log: Path
    kubectl_path: str

    def api_client(self, user: str = "admin", retries: int | None = None) -> client.ApiClient:
        """A client as `user`; `retries=0` fails fast where urllib3 would back off and retry."""
        conf = client.Configuration()
        conf.retries = retries
        conf.host = self.url
        conf.ssl_ca_cert = str(self.ca_file)
        conf.api_key = {"authorization": self.tokens[user]}
        conf.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(conf)

    def kubeconfig(self, user: str = "admin") -> Path:
        return self.workdir / f"kubeconfig-{user}"

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig()), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def audit_mark(self) -> int:
        """Where the audit log ends now; `audit_since(mark)` counts what came after."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def audit_since(self, mark: int) -> AuditCount:
        with self.audit_log.open("rb") as log:
            log.seek(mark)
            events = [json.loads(line) for line in log.read().splitlines() if line.strip()]
        calls = tuple(_call_name(e) for e in events)
        reads = sum(1 for e in events if e["verb"] in READ_VERBS)
        writes = sum(1 for e in events if e["verb"] in WRITE_VERBS)
        return AuditCount(reads, writes, calls)


def _call_name(event: dict[str, Any]) -> str:
    ref = event.get("objectRef")
    if ref is None:  # discovery and other non-resource URLs
        return f"{event['verb']} {event['requestURI'].split('?')[0]}"
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return f"{event['verb']} {resource}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        pytest.fail("openssl is not on PATH (it signs the test API server's certificates)")
    subprocess.run([tool, *args], check=True, capture_output=True)


def _certificates(d: Path) -> None:
    """A self-signed CA, a serving certificate for 127.0.0.1 signed by it, and the service
    account signing key (kube-apiserver refuses to start without one)."""
    _openssl("genrsa", "-out", str(d / "ca.key"), "2048")
    _openssl(
        "req", "-x509", "-new", "-key", str(d / "ca.key"), "-subj", "/CN=tokenscale-test-ca",
        "-days", "2", "-out", str(d / "ca.crt"),
    )  # fmt: skip
    _openssl("genrsa", "-out", str(d / "serving.key"), "2048")
    _openssl(
        "req", "-new", "-key", str(d / "serving.key"), "-subj", "/CN=127.0.0.1",
        "-out", str(d / "serving.csr"),
    )  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", str(d / "serving.csr"), "-CA", str(d / "ca.crt"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", str(d / "san.ext"), "-out", str(d / "serving.crt"),
    )  # fmt: skip
    _openssl("genrsa", "-out", str(d / "sa.key"), "2048")


def _etcd_args(etcd: str, d: Path, port: int) -> list[str]:
    peer = f"http://127.0.0.1:{free_port()}"
    return [
        etcd,
        "--name=test",
        f"--data-dir={d / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{port}",
        f"--advertise-client-urls=http://127.0.0.1:{port}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=test={peer}",
        "--unsafe-no-fsync",  # a throwaway store: durability only costs time here
        "--log-level=warn",
    ]


def _apiserver_args(apiserver: str, d: Path, etcd_port: int, port: int) -> list[str]:
    return [
        apiserver,
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",  # no kubernetes Endpoints: loopback is refused there
        f"--secure-port={port}",
        f"--cert-dir={d / 'certs'}",
        f"--tls-cert-file={d / 'serving.crt'}",
        f"--tls-private-key-file={d / 'serving.key'}",
        f"--token-auth-file={d / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer=https://127.0.0.1:{port}",
        f"--service-account-key-file={d / 'sa.key'}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        f"--audit-policy-file={d / 'audit-policy.yaml'}",
        f"--audit-log-path={d / 'audit.log'}",
        "--audit-log-mode=blocking",
    ]


def _write_config(d: Path, url: str, tokens: dict[str, str]) -> None:
    # token,user,uid,"group": both users are cluster admins (RBAC is the chart's business)
    (d / "tokens.csv").write_text(
        "".join(f'{token},{user},{user},"system:masters"\n' for user, token in tokens.items())
    )
    (d / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
    for user, token in tokens.items():
        cluster = {"server": url, "certificate-authority": str(d / "ca.crt")}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
            "current-context": "test",
        }
        (d / f"kubeconfig-{user}").write_text(yaml.safe_dump(config))


def _wait_ready(plane: ControlPlane, procs: dict[str, subprocess.Popen[bytes]], d: Path) -> None:
    api = plane.api_client(retries=0)
    auth = {"Authorization": f"Bearer {plane.tokens['admin']}"}
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited ({proc.returncode}):\n{_tail(d / f'{name}.log')}")
        try:
            response = api.call_api("GET", f"{plane.url}/readyz", header_params=auth)
            answer = f"/readyz answered {response.status}"
            if response.status == HTTPStatus.OK:
                return
        except (ApiException, HTTPError) as exc:  # refused while the server starts
            answer = str(exc)
        if time.monotonic() > deadline:
            log = _tail(d / "kube-apiserver.log")
            pytest.fail(f"kube-apiserver not ready in {START_TIMEOUT_S} s: {answer}\n{log}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def install_crds(api: client.ApiClient, manifests: list[dict[str, Any]]) -> None:
    """Create the CRDs and return once each is Established (its kind is served)."""
    ext = client.ApiextensionsV1Api(api)
    for manifest in manifests:
        refused = ""
        try:
            ext.create_custom_resource_definition(manifest)
        except ApiException as exc:
            refused = json.loads(exc.body or "{}").get("message", str(exc.reason))
        if refused:
            name = manifest["metadata"]["name"]
            pytest.fail(f"kube-apiserver refuses CRD {name}: {refused}", pytrace=False)
    deadline = time.monotonic() + START_TIMEOUT_S
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        while not _established(ext, name):
            if time.monotonic() > deadline:
                pytest.fail(f"CRD {name} not Established in {START_TIMEOUT_S} s")
            time.sleep(0.05)


def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    try:
        crd: Any = ext.read_custom_resource_definition(name)
    except ApiException:
        return False
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def project_crds() -> list[dict[str, Any]]:
    """The generated CRDs (crds/*.yaml), as `make generate` writes them."""
    return [yaml.safe_load(path.read_text()) for path in CRDS]


@contextlib.contextmanager
def control_plane(workdir: Path) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver on free loopback ports; both stopped on exit."""
    etcd, apiserver = cluster_tool("etcd"), cluster_tool("kube-apiserver")
    kubectl = cluster_tool("kubectl")
    _certificates(workdir)
    etcd_port, port = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    tokens = {user: os.urandom(16).hex() for user in ("admin", OPERATOR_USER)}
    _write_config(workdir, url, tokens)
    plane = ControlPlane(url, workdir / "ca.crt", tokens, workdir, workdir / "audit.log", kubectl)
    _discovery_cache(url).unlink(missing_ok=True)  # a run before on the same port left one
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in (
            ("etcd", _etcd_args(etcd, workdir, etcd_port)),
            ("kube-apiserver", _apiserver_args(apiserver, workdir, etcd_port, port)),
        ):
            with (workdir / f"{name}.log").open("wb") as log:
                procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _wait_ready(plane, procs, workdir)
        yield plane
    finally:
        # Killed, not stopped: the store is thrown away, and kube-apiserver's graceful
        # shutdown alone took 17 s.
        for proc in procs.values():
            proc.kill()
            proc.wait()
        _discovery_cache(url).unlink(missing_ok=True)


def _discovery_cache(url: str) -> Path:
    """Where the kubernetes client's DynamicClient keeps discovery for a server: a file in the
    temp dir, named after the URL, shared by every client of that URL in every process."""
    digest = hashlib.md5(url.encode(), usedforsecurity=False).hexdigest()
    return Path(tempfile.gettempdir()) / f"osrcp-{digest}.json"


def wait_until(what: str, check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """Poll `check` until it returns something; fail naming `what` after `timeout_s` (a
    deadline for a process that runs on its own, not a pause)."""
    deadline = time.monotonic() + timeout_s
    while (found := check()) is None or found is False:
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {timeout_s} s")
        time.sleep(0.1)
    return found

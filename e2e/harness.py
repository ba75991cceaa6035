"""Helpers for e2e tests on a real cluster: kubectl/helm calls, polling with deadlines, and the
operator as a local process running under the chart's ServiceAccount."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from e2e.fleet.lifetime import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / "e2e" / "cluster"
RELEASE = "tokenscale"
SYSTEM_NAMESPACE = "tokenscale-system"
T = TypeVar("T")


def cluster_env() -> dict[str, str]:
    """The variables e2e/cluster/env.sh exports (KUBECONFIG, KUBECTL, HELM, ...)."""
    out = subprocess.run(
        ["bash", str(CLUSTER_DIR / "env.sh")], check=True, capture_output=True, text=True
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line.removeprefix("export ").split("=", 1)
            env[name] = value.strip().strip("'\"")
    return env


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.5
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


OWNER_LABEL = "tokenscale.io/e2e-run"
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def run_owner() -> str:
    """`<host>.<pid>` of this test run: a valid label value (<= 63 characters)."""
    return f"{socket.gethostname()[:40]}.{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    env: dict[str, str]

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    def run(
        self,
        tool: str,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "KUBECONFIG": kubeconfig or self.kubeconfig}
        binary = self.env.get(tool.upper(), tool)
        proc = subprocess.run(
            [binary, *args], input=stdin, capture_output=True, text=True, env=env, timeout=180
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, **kw)

    def apply(
        self, doc: dict[str, Any], namespace: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc), check=check
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def items(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def condition(self, name: str, namespace: str, type_: str) -> dict[str, Any] | None:
        obj = self.get("inferenceservice", name, namespace) or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return None

    def new_namespace(self, prefix: str) -> str:
        """A namespace labelled with the test run that owns it (host and pid), so a later run can
        remove what an interrupted one left behind without touching a live run's namespaces."""
        name = f"{prefix}-{int(time.time() * 1000) % 10_000_000}"
        self.create_namespace(name, run_owner())
        return name

    def create_namespace(self, name: str, owner: str) -> None:
        """Create `name` with its owner label in one request (no unlabelled window)."""
        doc = {
            "apiVersion": "v1",
            "kind": "Namespace",
            # The real API server enforces Pod Security "restricted" on every pod the tests make
            # (worker pods included), as a hardened production namespace would.
            "metadata": {"name": name, "labels": {OWNER_LABEL: owner, **RESTRICTED_LABELS}},
        }
        self.kubectl("create", "-f", "-", stdin=yaml.safe_dump(doc))

    def sweep_abandoned_namespaces(self) -> list[str]:
        """Delete the namespaces of e2e runs on this host whose process is gone (a killed run
        leaves them, and their pods hold fake GPUs the next run's capacity tests count on)."""
        host = socket.gethostname()[:40]
        out = self.kubectl("get", "namespace", "-l", OWNER_LABEL, "-o", "json").stdout
        abandoned = []
        for ns in json.loads(out)["items"]:
            owner_host, _, pid = ns["metadata"]["labels"][OWNER_LABEL].rpartition(".")
            if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
                abandoned.append(ns["metadata"]["name"])
        for name in abandoned:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)
        return abandoned

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", check=False)
        wait_for(f"namespace {name} gone", lambda: self.get("namespace", name) is None, timeout=120)


def service_account_kubeconfig(cluster: Cluster, account: str, namespace: str) -> str:
    """A kubeconfig that authenticates as the ServiceAccount with a short-lived token, so the
    operator process has exactly the chart's RBAC."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=4h"
    ).stdout.strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    admin["users"] = [{"name": account, "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = account
    handle, path = tempfile.mkstemp(prefix="tokenscale-sa-", suffix=".kubeconfig")
    with os.fdopen(handle, "w") as f:
        json.dump(admin, f)
    return path


@dataclass
class Operator:
    """`tokenscale run` as a local process (kopf's runner) under the chart's ServiceAccount."""

    cluster: Cluster
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # kopf namespace globs: suites that run side by side on one cluster each watch their own.
    namespaces: tuple[str, ...] = ("lc-*",)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    def kubeconfig(self) -> str:
        """Credentials of the account the process runs as: the chart's own."""
        return service_account_kubeconfig(self.cluster, RELEASE, SYSTEM_NAMESPACE)

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig(),
            "TOKENSCALE_METRICS_PORT": str(self.metrics_port),
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        scope = [f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "tokenscale"),
                "run",
                *scope,
                "--health-port",
                str(self.health_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # an interrupted run (or demo) leaves no operator behind
        )
        log.close()  # the child holds its own copy of the descriptor
        wait_for("operator liveness endpoint", self.healthy, timeout=60)

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

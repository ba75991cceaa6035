"""Operator scale benchmark: hundreds of InferenceServices on the local cluster, Prometheus
running, every service at minReplicas 1 on a cheap one-GPU plan (Llama-3.1-8B on an A100 40GB,
a GPU kind no other suite uses, on fake nodes added for the run and removed after).

    python -m e2e.bench_scale [--stages 10,100,300] [--json out/bench-scale.json]

Per stage (services created while the operator runs): PromQL queries per tick (the operator's
gauge, cross-checked against Prometheus's own count of query requests), tick duration (from
tokenscale_autoscale_tick_duration_seconds over the stage's ticks) and the operator's VmRSS.
Then a cold start: the operator is stopped, every service's spec changes (a new generation),
and a fresh operator process must reconcile them all (status.observedGeneration current and
Planned=True). Invariants (checked by the e2e test too): queries per tick constant and equal to
Prometheus's own count. Targets (this command's exit code and report; not the test's, since a
loaded machine misses them): a tick under 2 s, RSS under 250 MB, cold reconcile of every service
under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.autoscale.operator import AutoscaleOperator, ensure_chart
from e2e.fleet.cluster import ClusterView
from e2e.fleet.prometheus import PrometheusServer
from e2e.harness import CLUSTER_DIR, Cluster, cluster_env, wait_for

POOL, KIND, GPUS_PER_NODE = "a100-40gb", "a100-40gb", 8
# kube-apiserver's default Service range (10.0.0.0/24) holds 254 ClusterIPs: one per service is
# not enough for 300. The run adds a ServiceCIDR of its own, deleted afterwards.
SERVICE_CIDR = ("tokenscale-bench-scale", "10.0.16.0/22")
TICK_S = 5
TARGETS = {"tick_s": 2.0, "rss_mb": 250.0, "cold_reconcile_s": 60.0}
METRIC = re.compile(r"^([a-z_:]+)(\{[^}]*\})? (\S+)$", re.M)


@dataclass
class Stage:
    services: int
    queries_per_tick: float
    prometheus_queries_per_tick: float
    tick_mean_s: float
    tick_max_bucket_s: float
    ticks: int
    rss_mb: float


@dataclass
class Result:
    stages: list[Stage] = field(default_factory=list)
    cold_reconcile_s: float | None = None
    cold_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    command: str = "python -m e2e.bench_scale"

    def failures(self) -> list[str]:
        """Everything the benchmark checks: the invariants and the speed targets."""
        return self.invariant_failures() + self.target_misses()

    def invariant_failures(self) -> list[str]:
        """What holds on any machine, however loaded: a constant number of queries per tick,
        and the operator's own count equal to Prometheus's count of the queries it answered over
        the same ticks (both read between ticks, see `after_a_tick`)."""
        out = []
        counts = {s.queries_per_tick for s in self.stages}
        if len(counts) != 1:
            out.append(f"queries per tick changed with the service count: {sorted(counts)}")
        for s in self.stages:
            if abs(s.prometheus_queries_per_tick - s.queries_per_tick) > 1e-3:
                out.append(
                    f"{s.services} services: the operator counts {s.queries_per_tick} queries "
                    f"per tick, Prometheus answered {s.prometheus_queries_per_tick}"
                )
        return out

    def target_misses(self) -> list[str]:
        """Speed and memory targets: figures of this machine at this moment, for the report."""
        out = []
        for s in self.stages:
            if s.tick_max_bucket_s > TARGETS["tick_s"]:
                out.append(f"{s.services} services: a tick took up to {s.tick_max_bucket_s} s")
        if (self.peak_rss_mb or 0) > TARGETS["rss_mb"]:
            out.append(f"operator RSS peaked at {self.peak_rss_mb:.0f} MB")
        if self.cold_reconcile_s is None or self.cold_reconcile_s > TARGETS["cold_reconcile_s"]:
            out.append(f"cold reconcile took {self.cold_reconcile_s} s")
        return out


def manifest(name: str, max_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "tokenscale.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "architecture": "llama-3.1-8b",
            },
            "resources": {"gpu": KIND, "gpusPerReplica": 1, "cpu": "1", "memory": "1Gi"},
            "scaling": {"minReplicas": 1, "maxReplicas": max_replicas},
        },
    }


def apply_services(
    cluster: Cluster, namespace: str, names: Sequence[str], max_replicas: int
) -> None:
    """Server-side apply in chunks: one request per object, no client-side diff."""
    for i in range(0, len(names), 100):
        docs = [manifest(n, max_replicas) for n in names[i : i + 100]]
        body = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs})
        cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=bench",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=body,
        )


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {f"{m.group(1)}{m.group(2) or ''}": float(m.group(3)) for m in METRIC.finditer(text)}


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def prometheus_queries(prom: PrometheusServer) -> float:
    """Instant queries Prometheus has answered (its own /metrics), for a count of our own."""
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(m.group(3))
        for m in METRIC.finditer(text)
        if m.group(1) == "prometheus_http_requests_total"
        and 'handler="/api/v1/query"' in (m.group(2) or "")
    )


def reconciled(view: ClusterView, namespace: str, want: int) -> int:
    items = (
        view.get(f"/apis/tokenscale.io/v1alpha1/namespaces/{namespace}/inferenceservices") or {}
    ).get("items") or []
    done = 0
    for item in items:
        status = item.get("status") or {}
        planned = any(
            c["type"] == "Planned" and c["status"] == "True" for c in status.get("conditions") or []
        )
        if planned and status.get("observedGeneration") == item["metadata"]["generation"]:
            done += 1
    return done if len(items) >= want else 0


TICK_COUNT = "tokenscale_autoscale_tick_duration_seconds_count"


def wait_ticks(op: AutoscaleOperator, ticks: int) -> None:
    start = scrape(op.metrics_port).get(TICK_COUNT, 0)
    wait_for(
        f"{ticks} ticks",
        lambda: scrape(op.metrics_port).get(TICK_COUNT, 0) >= start + ticks,
        timeout=ticks * TICK_S * 4,
        every=1,
    )


def after_a_tick(
    op: AutoscaleOperator, prom: PrometheusServer, past: float | None = None
) -> tuple[dict[str, float], float]:
    """The operator's metrics and Prometheus's query count, both read just after a tick ended
    (its count moved past `past`, by default the count now). A tick's queries are all answered
    before its duration is observed, and the next tick starts TICK_S later, so the two counts
    are read with no tick in between: they agree exactly, not to within a tick."""
    start = scrape(op.metrics_port).get(TICK_COUNT, 0) if past is None else past
    while True:
        wait_for("a tick", lambda s=start: scrape(op.metrics_port).get(TICK_COUNT, 0) > s,
                 timeout=TICK_S * 8, every=0.1)  # fmt: skip
        ops, queries = scrape(op.metrics_port), prometheus_queries(prom)
        # Read twice around Prometheus: a tick that started meanwhile makes us try the next one.
        if scrape(op.metrics_port).get(TICK_COUNT, 0) == ops.get(TICK_COUNT, 0):
            return ops, queries
        start = ops.get(TICK_COUNT, 0)


def measure(op: AutoscaleOperator, prom: PrometheusServer, services: int, ticks: int = 6) -> Stage:
    """Operator metrics over `ticks` steady ticks (after two that settle the new services'
    first status writes): the queries gauge, the tick histogram's mean and the smallest bucket
    bound holding every tick, Prometheus's own query count, and VmRSS."""
    assert op.proc is not None
    wait_ticks(op, 2)
    before, prom_before = after_a_tick(op, prom)
    after, prom_after = after_a_tick(op, prom, before.get(TICK_COUNT, 0) + ticks - 1)
    n = after[TICK_COUNT] - before.get(TICK_COUNT, 0)
    total = after["tokenscale_autoscale_tick_duration_seconds_sum"] - before.get(
        "tokenscale_autoscale_tick_duration_seconds_sum", 0
    )
    bounds = sorted(
        (float(k.split('le="')[1].rstrip('"}')), v - before.get(k, 0))
        for k, v in after.items()
        if k.startswith("tokenscale_autoscale_tick_duration_seconds_bucket") and "+Inf" not in k
    )
    max_bucket = next((le for le, c in bounds if c >= n), float("inf"))
    return Stage(
        services=services,
        queries_per_tick=after["tokenscale_prometheus_queries_per_tick"],
        prometheus_queries_per_tick=round((prom_after - prom_before) / n, 4),
        tick_mean_s=round(total / n, 3),
        tick_max_bucket_s=max_bucket,
        ticks=int(n),
        rss_mb=round(rss_mb(op.proc.pid), 1),
    )


def add_nodes(cluster: Cluster, gpus: int) -> list[str]:
    """Enough `POOL` nodes for `gpus` more GPUs; returns the names added."""

    def names() -> set[str]:
        out = cluster.kubectl(
            "get", "nodes", "-l", f"tokenscale.io/pool={POOL}", "-o", "name"
        ).stdout
        return {n.removeprefix("node/") for n in out.split()}

    before = names()
    count = -(-gpus // GPUS_PER_NODE)
    subprocess.run(
        ["bash", str(CLUSTER_DIR / "add-nodes.sh"), POOL, str(count), str(GPUS_PER_NODE)],
        check=True,
        env={**os.environ, **cluster.env},
    )
    return sorted(names() - before)


def add_service_cidr(cluster: Cluster) -> None:
    name, cidr = SERVICE_CIDR
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": name},
        "spec": {"cidrs": [cidr]},
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))


def clean_up(cluster: Cluster, prom: PrometheusServer, namespace: str, nodes: list[str]) -> None:
    prom.stop()
    cluster.delete_namespace(namespace)
    if nodes:
        cluster.kubectl("delete", "node", *nodes, "--wait=false", check=False)
    # Removed once no Service holds an address from it (the API server's finalizer).
    cluster.kubectl("delete", "servicecidr", SERVICE_CIDR[0], "--wait=false", check=False)


def run(stages: Sequence[int], work: Path, keep: bool = False) -> Result:
    cluster = Cluster(cluster_env())
    ensure_chart(cluster)
    result = Result()
    namespace = cluster.new_namespace(f"as-b{secrets.token_hex(2)}-scale")
    nodes = add_nodes(cluster, max(stages))
    add_service_cidr(cluster)
    prom = PrometheusServer(work / "prometheus")
    prom.start()
    env = {
        "TOKENSCALE_PROMETHEUS_URL": prom.url,
        "TOKENSCALE_PROMETHEUS_WINDOW": "30s",
        "TOKENSCALE_AUTOSCALE_INTERVAL_SECONDS": str(TICK_S),
    }
    # This run's namespace only: another run of the benchmark or the scenarios may share the
    # cluster.
    op = AutoscaleOperator(cluster, work / "operator.log", namespaces=(namespace,), extra_env=env)
    view = ClusterView(cluster.kubeconfig)
    names = [f"svc-{i:03d}" for i in range(max(stages))]
    try:
        op.start()
        made = 0
        for count in stages:
            apply_services(cluster, namespace, names[made:count], max_replicas=2)
            made = count
            wait_for(
                f"{count} services reconciled",
                lambda c=count: reconciled(view, namespace, c) >= c,
                timeout=300,
                every=2,
            )
            result.stages.append(measure(op, prom, count))
            print(f"[bench-scale] {asdict(result.stages[-1])}", flush=True)
        assert op.proc is not None
        result.peak_rss_mb = round(rss_mb(op.proc.pid, "VmHWM"), 1)
        op.stop()
        apply_services(cluster, namespace, names[:made], max_replicas=3)  # a new generation each
        started = time.monotonic()
        op.start()
        wait_for(
            f"{made} services reconciled after a cold start",
            lambda: reconciled(view, namespace, made) >= made,
            timeout=300,
            every=1,
        )
        result.cold_reconcile_s = round(time.monotonic() - started, 1)
        assert op.proc is not None
        result.cold_rss_mb = round(rss_mb(op.proc.pid), 1)
        result.peak_rss_mb = max(result.peak_rss_mb, round(rss_mb(op.proc.pid, "VmHWM"), 1))
        print(
            f"[bench-scale] cold start: {made} reconciled in {result.cold_reconcile_s} s",
            flush=True,
        )
    finally:
        op.stop()
        if keep:
            print(f"[bench-scale] kept {namespace}, Prometheus at {prom.url}", flush=True)
        else:
            clean_up(cluster, prom, namespace, nodes)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.bench_scale", description=__doc__)
    p.add_argument("--stages", default="10,100,300", help="service counts, ascending")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--work-dir", default="out/bench-scale", help="operator and Prometheus logs")
    p.add_argument("--keep", action="store_true", help="leave services, nodes, Prometheus up")
    a = p.parse_args(argv)
    stages = [int(s) for s in a.stages.split(",")]
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    result = run(stages, work, keep=a.keep)
    report = {**asdict(result), "targets": TARGETS, "failures": result.failures()}
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 1 if result.failures() else 0


if __name__ == "__main__":
    sys.exit(main())

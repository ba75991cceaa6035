"""The e2e harness's own promise: a run removes the namespaces a killed run left on this host,
and never a live run's or another host's."""

from __future__ import annotations

import os
import subprocess
import sys

from e2e.harness import Cluster, run_owner


def test_sweep_deletes_only_namespaces_of_dead_runs_on_this_host(cluster: Cluster) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = run_owner().rpartition(".")[0]
    suffix = str(os.getpid())
    names = {
        "dead": f"lc-sweep-dead-{suffix}",
        "live": f"lc-sweep-live-{suffix}",
        "elsewhere": f"lc-sweep-elsewhere-{suffix}",
    }
    cluster.create_namespace(names["dead"], f"{host}.{dead.stdout.strip()}")
    cluster.create_namespace(names["live"], run_owner())
    cluster.create_namespace(names["elsewhere"], f"another-host.{dead.stdout.strip()}")
    try:
        swept = cluster.sweep_abandoned_namespaces()
        assert names["dead"] in swept
        assert names["live"] not in swept and names["elsewhere"] not in swept
        phase = (cluster.get("namespace", names["dead"]) or {}).get("status", {}).get("phase")
        assert phase in (None, "Terminating")
        for kept in ("live", "elsewhere"):
            assert (cluster.get("namespace", names[kept]) or {})["status"]["phase"] == "Active"
    finally:
        for name in names.values():
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

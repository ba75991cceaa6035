"""The shared model cache, filled once from a real S3-compatible server (moto's, as a process),
through a network that cuts the first download of the weights half way.

The operator creates the claim (bound by the real PersistentVolume controller to a hostPath volume
of its storage class) and the fill Job; the real Job controller runs the fill pods, which the
fleet emulator executes as the pod would (`tokenscale-worker fill` with the pod's arguments,
environment and Secret), reporting each exit as the kubelet does. The first fill pod fails
half way; the Job controller retries; the second resumes and completes. Throughout, the service
asks for two replicas and gets one until the copy is complete (its pod waits in its init container,
`wait-model`); then both replicas start from the cache and nothing reads S3 again.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.worker.s3_server import TEST_ENV, CuttingProxy, moto_server

from e2e.autoscale.conftest import Scenario
from e2e.autoscale.helpers import record_result
from e2e.harness import wait_for
from tokenscale_contract.model_cache import PARTIAL_SUFFIX, cache_key

NAME = "cached"
BUCKET = "models"
PREFIX = "tiny-llama"
SOURCE = f"s3://{BUCKET}/{PREFIX}"
STORAGE_CLASS = "e2e-model-cache"
WEIGHTS = "model.safetensors"
# A checkpoint's files: 1.7 MB of weights and the small files beside them.
FILES: dict[str, bytes] = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"]}\n',
    "tokenizer.json": b'{"version": "1.0"}\n' * 2000,
    "nested/tokenizer_config.json": b"{}\n",
    WEIGHTS: bytes(range(256)) * 6700,
}

SERVICE: dict[str, Any] = {
    "apiVersion": "tokenscale.io/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": NAME},
    "spec": {
        # The simulator serves the replicas, timed as the catalog's 8B model on an L4; what the
        # fill copies is the bucket's content, whatever the plan's size.
        "model": {
            "source": SOURCE,
            "architecture": "llama-3.1-8b",
            "servedName": "llama",
            "cache": {"storageClassName": STORAGE_CLASS, "size": "1Gi"},
        },
        "resources": {"gpu": "l4-24gb", "cpu": "1", "memory": "2Gi"},
        "secrets": {"s3Credentials": {"name": "s3-credentials"}},
        "scaling": {"minReplicas": 2, "maxReplicas": 2, "mode": "auto"},
    },
}

# A statically provisioned volume of the cache's storage class: the real PersistentVolume
# controller binds the operator's claim to it (class, access mode and size match).
CACHE_VOLUME = """
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {namespace}-model-cache}}
spec:
  capacity: {{storage: 2Gi}}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: {storage_class}
  hostPath: {{path: {path}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: s3-credentials, namespace: {namespace}}}
stringData:
  AWS_ACCESS_KEY_ID: {key_id}
  AWS_SECRET_ACCESS_KEY: {secret}
"""


def upload(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_keys())
    s3.create_bucket(Bucket=BUCKET)
    for name, body in FILES.items():
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=body)


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def stuck_fills(state: dict[str, Any]) -> str:
    """What each fill process still running is doing, from /proc: its state and kernel wait."""
    lines = []
    for pod, run in (state.get("running") or {}).items():
        proc = Path(f"/proc/{run['pid']}")
        try:
            status = (proc / "status").read_text().splitlines()
            fields = [line for line in status if line.startswith(("State", "Threads"))]
            detail = f"{fields} wchan={(proc / 'wchan').read_text()!r}"
            detail += f" cmdline={(proc / 'cmdline').read_text().split(chr(0))[:6]}"
        except OSError as err:
            detail = f"gone ({err})"
        lines.append(f"fill {pod} pid {run['pid']}: {detail}")
    return "\n".join(lines) or "no fill process running"


def fill_pods(sc: Scenario) -> str:
    """Where the fill pods are in the cluster: node, phase, conditions, container states."""
    try:
        wide = sc.cluster.kubectl("get", "pods,jobs", "-n", sc.namespace, "-o", "wide")
        raw = sc.cluster.kubectl("get", "pods", "-n", sc.namespace, "-o", "json")
        pods = json.loads(raw.stdout)
    except Exception as err:  # a diagnostic must not hide the failure it explains
        return f"kubectl failed: {err}"
    lines = [wide.stdout]
    for pod in pods.get("items", []):
        status = pod.get("status", {})
        lines.append(
            f"{pod['metadata']['name']}: node={pod['spec'].get('nodeName')} "
            f"phase={status.get('phase')} conditions={status.get('conditions')} "
            f"containers={status.get('containerStatuses')}"
        )
    return "\n".join(lines)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(600)
def test_the_model_cache_is_filled_once_through_a_cut_and_gates_the_second_replica(
    scenario: Scenario, tmp_path: Path
) -> None:
    sc = scenario
    cache_dir = tmp_path / "volume"
    cache_dir.mkdir()
    key = cache_key(SOURCE, None)
    with moto_server() as endpoint, CuttingProxy(endpoint, cut_path_suffix=WEIGHTS, cuts=1) as net:
        upload(endpoint)
        sc.cluster.kubectl(
            "apply",
            "-f",
            "-",
            stdin=CACHE_VOLUME.format(
                namespace=sc.namespace,
                storage_class=STORAGE_CLASS,
                path=cache_dir,
                key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
                secret=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            ),
        )
        service = copy.deepcopy(SERVICE)
        service["spec"]["model"]["s3EndpointUrl"] = net.url
        svc = sc.service(NAME)
        sc.cluster.apply(service, sc.namespace)
        timeline = sc.timeline(NAME)

        def fill_runs() -> list[dict[str, Any]]:
            return [r for r in sc.fleet.state().get("runs") or [] if r["namespace"] == sc.namespace]

        # 1. The first fill pod is cut half way and fails; nothing a replica reads exists.
        try:
            failed = wait_for(
                "the first fill pod to fail on the cut download",
                lambda: next((r for r in fill_runs() if r["exitCode"] != 0), None),
                timeout=180,
            )
        except AssertionError as err:
            raise AssertionError(
                f"{err}\n{stuck_fills(sc.fleet.state())}\n{fill_pods(sc)}\n"
                f"fleet log:\n{sc.fleet.log_tail(80)}"
            ) from None
        # The Job controller's back-off (10 s at least) keeps the next pod away while we look.
        assert not (cache_dir / key).exists(), "a failed fill left a complete-looking copy"
        partial = cache_dir / f"{key}{PARTIAL_SUFFIX}"
        assert partial.is_dir(), f"no partial copy at {partial}: {sorted(cache_dir.iterdir())}"
        assert net.cuts_left == 0, "the download was never cut"
        filling = svc.condition("ModelCached")
        assert filling.get("status") == "False", filling

        # 2. The Job controller retries; the second pod resumes and completes the copy.
        done = wait_for(
            "a fill pod to complete",
            lambda: next((r for r in fill_runs() if r["exitCode"] == 0), None),
            timeout=180,
        )

        def job_complete() -> dict[str, Any] | None:
            job = sc.cluster.get("job", done["job"], sc.namespace) or {}
            conds = (job.get("status") or {}).get("conditions") or []
            complete = any(c["type"] == "Complete" and c["status"] == "True" for c in conds)
            return job if complete else None

        job = wait_for("the Job to be Complete", job_complete, timeout=60)
        assert job["metadata"]["ownerReferences"][0]["name"] == NAME
        assert job["status"].get("failed") == 1, job["status"]
        requests_when_filled = net.requests
        for name, body in FILES.items():
            copied = (cache_dir / key / name).read_bytes()
            assert digest(copied) == digest(body), f"{name} differs from the bucket's"
        assert not partial.exists(), "the partial copy was not renamed into place"

        # 3. With the copy complete the gate lifts: two replicas, both started from the cache.
        wait_for(
            "2 replicas serving",
            lambda: svc.replicas() == 2 and sc.fleet.backends(NAME) == 2,
            timeout=180,
            every=1,
        )
        cached = wait_for(
            "ModelCached=True",
            lambda: (c := svc.condition("ModelCached")).get("status") == "True" and c,
            timeout=60,
        )
        # The operator's own scale to minReplicas when the gate lifted is no foreign write.
        conflict = svc.condition("ScalingConflict")
        assert conflict.get("status") != "True", conflict
        filled_at = done["endedAt"]
        before = [s for s in timeline.samples if s.at < filled_at]
        timeline.stop()
        assert before, "no sample of the Deployment while the fill ran"
        assert max(s.replicas for s in before) == 1, (
            "the service asked for more than one replica before the model cache was filled: "
            f"{[(round(s.at - filled_at, 1), s.replicas) for s in before if s.replicas > 1][:5]}"
        )
        inits = [r for r in sc.fleet.state().get("initContainers") or [] if r["exitCode"] == 0]
        assert len(inits) >= 2, inits
        # The first replica's init container held it until the fill was done.
        assert min(r["endedAt"] for r in inits) >= filled_at - 1.0, (inits, filled_at)

        # 4. Fill once: every object fetched once, the cut one twice, and no replica reads S3.
        gets = {name: net.gets(f"/{BUCKET}/{PREFIX}/{name}") for name in FILES}
        assert gets == {**dict.fromkeys(FILES, 1), WEIGHTS: 2}, gets
        # Both replicas started and serve after the fill: not one request more reached S3.
        assert net.requests == requests_when_filled, (net.requests, requests_when_filled)

        record_result(
            "model_cache",
            {
                "fill_pods": len(fill_runs()),
                "first_fill_failed_after_s": round(failed["endedAt"] - failed["startedAt"], 1),
                "fill_s": round(done["endedAt"] - done["startedAt"], 1),
                "gets_per_object": gets,
                "condition": cached.get("message"),
            },
        )
        sc.cluster.kubectl("delete", "pv", f"{sc.namespace}-model-cache", "--wait=false")

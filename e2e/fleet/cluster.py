"""What the fleet emulator reads from the API server: worker pods, tuning ConfigMaps, the
InferenceServices and node GPU labels. Plain JSON (no client models): it is polled often."""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from tokenscale.domain.placement import DEFAULT_PLACEMENT

MANAGED = "app.kubernetes.io/managed-by=tokenscale"
SERVICE_LABEL = "tokenscale.io/service"
# The model cache's fill pods (domain/model_cache.py): run to completion, not served.
FILL_LABEL = "tokenscale.io/model-fill"
TUNING_KEY = "tuning.json"


class NotFoundError(LookupError):
    """The API server answered 404."""


@dataclass
class Snapshot:
    """One namespace at one poll."""

    pods: list[dict[str, Any]]
    tuning: dict[str, str]  # service -> tuning.json text
    services: dict[str, dict[str, Any]]  # service -> InferenceService spec


def running(pod: dict[str, Any]) -> bool:
    """What a kubelet runs: bound, phase Running (kwok's stage), not terminating. Not its Ready
    condition: that is the kubelet's (here the emulator's) report of the probes, not an input."""
    meta, status = pod["metadata"], pod.get("status") or {}
    if meta.get("deletionTimestamp") or not (pod.get("spec") or {}).get("nodeName"):
        return False
    return status.get("phase") == "Running"


@dataclass
class ClusterView:
    kubeconfig: str | None = None
    _api: client.ApiClient | None = None
    _gpu_of_node: dict[str, str] = field(default_factory=dict)

    def _client(self) -> client.ApiClient:
        if self._api is None:
            self._api = config.new_client_from_config(config_file=self.kubeconfig)  # type: ignore[no-untyped-call]
        return self._api

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        """GET an API path as JSON; None when it does not exist."""
        try:
            return self._get(path, **query)
        except NotFoundError:
            return None

    def _get(self, path: str, **query: str) -> dict[str, Any]:
        api = self._client()
        method, url, headers, body, _ = api.param_serialize(
            "GET",
            path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, body=body, _request_timeout=10)
        raw: bytes = resp.read() or b""  # type: ignore[no-untyped-call]
        if resp.status == 404:
            raise NotFoundError(path)
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}: {raw[:300]!r}")
        result: dict[str, Any] = json.loads(raw)
        return result

    def set_pod_ready(self, namespace: str, pod: str, ready: bool, why: str | None) -> None:
        """Patch the pod's Ready and ContainersReady conditions (a strategic merge on `type`),
        as the kubelet's status manager does after a probe changes."""
        status = "True" if ready else "False"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": status, "lastTransitionTime": now}
            | ({} if ready else {"reason": "ContainersNotReady", "message": why or ""})
            for kind in ("Ready", "ContainersReady")
        ]
        body = {"status": {"conditions": conditions}}
        self._patch_status(namespace, pod, body, "strategic-merge-patch")

    def claim_path(self, namespace: str, claim: str) -> str | None:
        """The directory a kubelet would mount for a claim bound to a hostPath volume; None
        while the claim is unbound (the scheduler waits for that before placing the pod)."""
        pvc = self.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        volume = ((pvc or {}).get("spec") or {}).get("volumeName")
        if not volume:
            return None
        pv = self._get(f"/api/v1/persistentvolumes/{volume}")
        host = (pv.get("spec") or {}).get("hostPath")
        if not host:
            raise RuntimeError(f"volume {volume} of claim {claim} is not a hostPath volume")
        return str(host["path"])

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return base64.b64decode((secret.get("data") or {})[key]).decode()

    def set_pod_terminated(self, namespace: str, pod: dict[str, Any], exit_code: int) -> None:
        """Phase Succeeded or Failed with each container's exit, as the kubelet reports a pod
        whose containers ended (restartPolicy Never): what the Job controller counts."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = "Completed" if exit_code == 0 else "Error"
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": reason,
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
            for c in pod["spec"]["containers"]
        ]
        phase = "Succeeded" if exit_code == 0 else "Failed"
        body = {"status": {"phase": phase, "containerStatuses": statuses}}
        self._patch_status(namespace, pod["metadata"]["name"], body, "merge-patch")

    def _patch_status(self, namespace: str, pod: str, body: dict[str, Any], kind: str) -> None:
        api = self._client()
        method, url, headers, payload, _ = api.param_serialize(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
            body=body,
            header_params={
                "Accept": "application/json",
                "Content-Type": f"application/{kind}+json",
            },
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=10)
        raw: bytes = resp.read() or b""  # type: ignore[no-untyped-call]
        if resp.status != 200:
            raise RuntimeError(
                f"PATCH pod {namespace}/{pod} status: HTTP {resp.status}: {raw[:300]!r}"
            )

    def snapshot(self, namespace: str) -> Snapshot:
        pods = self._get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=MANAGED)["items"]
        cms = self._get(f"/api/v1/namespaces/{namespace}/configmaps", labelSelector=MANAGED)
        tuning = {}
        for cm in cms["items"]:
            service = (cm["metadata"].get("labels") or {}).get(SERVICE_LABEL)
            text = (cm.get("data") or {}).get(TUNING_KEY)
            if service and text is not None and cm["metadata"]["name"] == f"{service}-tuning":
                tuning[service] = text
        path = f"/apis/tokenscale.io/v1alpha1/namespaces/{namespace}/inferenceservices"
        services = {s["metadata"]["name"]: s.get("spec") or {} for s in self._get(path)["items"]}
        return Snapshot(pods, tuning, services)

    def gpu_of_node(self, node: str) -> str | None:
        if node not in self._gpu_of_node:
            labels = self._get(f"/api/v1/nodes/{node}")["metadata"].get("labels") or {}
            # The node's GPU kind, from the GFD product label the worker pods select on.
            kind = DEFAULT_PLACEMENT.kind_of(labels)
            if kind is None:
                return None
            self._gpu_of_node[node] = kind
        return self._gpu_of_node[node]

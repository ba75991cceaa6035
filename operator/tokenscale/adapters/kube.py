"""Thin Kubernetes API wrapper: server-side apply, scale, status patch, events, small reads.

No decisions here: callers pass fully rendered objects; this module only talks to the API server,
and remembers what it applied so that an unchanged child is not applied again (domain/drift.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tokenscale.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tokenscale.domain import placement
from tokenscale.domain.autoscale import GpuNode, gpu_nodes
from tokenscale.domain.drift import fingerprint, project
from tokenscale.domain.names import FIELD_MANAGER, ServiceRef
from tokenscale.domain.workload import DEPLOYMENT, WorkloadKind

log = logging.getLogger(__name__)
Manifest = dict[str, Any]
# How long has_resource() trusts its last answer: a CRD installed later is seen within a minute.
HAS_RESOURCE_TTL_S = 60.0


def load_client() -> client.ApiClient:
    """In-cluster credentials when running as a pod, else the local kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


# (apiVersion, kind, namespace, name) of a child.
ChildKey = tuple[str, str, str, str]


@dataclass
class ApplyResult:
    kind: str
    name: str
    # False when the child still held the manifest as last applied, and nothing was sent.
    sent: bool


@dataclass(frozen=True)
class AppliedChild:
    """What this process last applied to a child, and what the API server stored at its paths."""

    rendered: str  # fingerprint of the manifest
    live: str  # fingerprint of the stored object's values at the manifest's paths
    shape: Manifest  # the manifest: which paths a later watch copy is compared at


def child_key(obj: Any) -> ChildKey:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])


def _items(response: Any) -> list[Manifest]:
    """A list call's items as plain JSON, without the client's models: building them and
    serializing them back cost 0.86 s of a 0.98 s autoscale tick at 300 pods, and each
    reconcile reads a Deployment and lists pods the same way."""
    items: list[Manifest] = json.loads(response.data)["items"]
    return items


class Kube:
    """The operator's only door to the API server."""

    def __init__(self, api: client.ApiClient, dry_run: bool = False) -> None:
        self.api = api
        self.dry_run = dry_run
        self.dynamic = DynamicClient(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        # The dynamic client's discovery cache is not thread-safe, and a lookup that misses
        # (PodMonitor on a cluster without the Prometheus operator) rebuilds it from scratch:
        # kopf's handler threads and the autoscale thread crashed each other with KeyError
        # 'resources' / 'apis' at 100 services. One lock around lookups, and has_resource
        # answers from memory, so a missing kind costs one rediscovery a minute, not one per
        # reconcile.
        self._discovery = threading.Lock()
        self._has_resource: dict[tuple[str, str], tuple[float, bool]] = {}
        # What was applied to each child, and the watch's latest copy of it at the same paths.
        self._memo = threading.Lock()
        self._applied: dict[ChildKey, AppliedChild] = {}
        self._seen: dict[ChildKey, str | None] = {}

    # ---- writes ---------------------------------------------------------------------------

    def apply(self, manifest: Manifest) -> ApplyResult:
        """Server-side apply as field manager `tokenscale`, unless the child still holds this
        very manifest as last applied, by the watch's latest copy (`observe`): then nothing is
        sent. A child the watch never reported since the apply (a PodMonitor, which is not
        watched) counts as unchanged: it is applied again when its manifest changes."""
        key, rendered = child_key(manifest), fingerprint(manifest)
        with self._memo:
            last, seen = self._applied.get(key), self._seen.get(key)
        if last is not None and last.rendered == rendered and seen == last.live:
            return ApplyResult(manifest["kind"], manifest["metadata"]["name"], sent=False)
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
        if self.dry_run:
            kwargs["dry_run"] = "All"
        result = resource.server_side_apply(
            body=manifest, name=meta["name"], namespace=meta.get("namespace"), **kwargs
        )
        if not self.dry_run:
            live = fingerprint(project(result.to_dict(), manifest))
            with self._memo:
                self._applied[key] = AppliedChild(rendered, live, manifest)
                self._seen[key] = live
        return ApplyResult(manifest["kind"], meta["name"], sent=True)

    def observe(self, body: Manifest, deleted: bool = False) -> bool:
        """Take note of the watch's copy of a child; True when it no longer holds what this
        process applied at the paths it applied (edited, deleted, or never applied here)."""
        key = child_key(body)
        with self._memo:
            last = self._applied.get(key)
            if deleted or last is None:
                self._seen.pop(key, None)
                return True
            now = fingerprint(project(body, last.shape))
            self._seen[key] = now
            return now != last.live

    def scale(
        self, ref: ServiceRef, name: str, replicas: int, kind: WorkloadKind = DEPLOYMENT
    ) -> None:
        """Set replicas through the workload's scale subresource (groups, for a
        LeaderWorkerSet)."""
        body = {"spec": {"replicas": replicas}}
        dry_run = "All" if self.dry_run else None
        if kind == DEPLOYMENT:
            self.apps.patch_namespaced_deployment_scale(
                name, ref.namespace, body, field_manager=FIELD_MANAGER, dry_run=dry_run
            )
            return
        self.custom.patch_namespaced_custom_object_scale(
            kind.group,
            kind.version,
            ref.namespace,
            kind.plural,
            name,
            body,
            field_manager=FIELD_MANAGER,
            dry_run=dry_run,
        )

    def patch_status(
        self, ref: ServiceRef, status: dict[str, Any], resource_version: str | None = None
    ) -> str | None:
        """Merge-patch the InferenceService's status subresource (never its spec or metadata).
        With `resource_version` the patch applies only to that version (409 Conflict
        otherwise): a merge patch replaces whole lists, so a writer that computed
        `conditions` from an older copy must not overwrite a newer one. Returns the stored
        object's new resourceVersion."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        stored: Any = self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            body,
            field_manager=FIELD_MANAGER,
            dry_run="All" if self.dry_run else None,
        )
        version = (stored.get("metadata") or {}).get("resourceVersion") if stored else None
        return str(version) if version and not self.dry_run else None

    def event(self, ref: ServiceRef, type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on the InferenceService."""
        now = datetime.datetime.now(datetime.UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{ref.name}.", namespace=ref.namespace),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=KIND,
                name=ref.name,
                namespace=ref.namespace,
                uid=ref.uid,
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=FIELD_MANAGER),
            reporting_component=FIELD_MANAGER,
            reporting_instance=FIELD_MANAGER,
        )
        if self.dry_run:
            log.info("dry-run event %s %s: %s", type_, reason, message)
            return
        try:
            self.core.create_namespaced_event(ref.namespace, body)
        except ApiException as exc:
            # A namespace being deleted refuses new objects; its service and every Event on it
            # are going away, so the story has no reader left. Anything else is a real failure.
            if not _namespace_going_away(exc):
                raise
            log.info("event %s on %s/%s dropped: %s", reason, ref.namespace, ref.name, exc.reason)

    # ---- reads ----------------------------------------------------------------------------

    def get_service(self, namespace: str, name: str) -> Manifest | None:
        """An InferenceService as stored, or None when it is gone."""
        try:
            found: Any = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found)

    def get_workload(
        self, namespace: str, name: str, kind: WorkloadKind = DEPLOYMENT
    ) -> Manifest | None:
        """A Deployment or LeaderWorkerSet as stored, or None when it does not exist."""
        try:
            if kind == DEPLOYMENT:
                response: Any = self.apps.read_namespaced_deployment(
                    name, namespace, _preload_content=False
                )
            else:
                response = self.custom.get_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural, name, _preload_content=False
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: Manifest = json.loads(response.data)
        return result

    def get_job(self, namespace: str, name: str) -> Manifest | None:
        try:
            response: Any = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: Manifest = json.loads(response.data)
        return result

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return _items(
            self.core.list_namespaced_pod(
                namespace, label_selector=label_selector, _preload_content=False
            )
        )

    def gpu_nodes(self) -> list[GpuNode] | None:
        """Free GPUs per node (one list of nodes, one of pods); None when RBAC forbids the
        cluster-wide reads (namespaced installs), which leaves capacity unknown."""
        try:
            nodes = _items(self.core.list_node(_preload_content=False))
            pods = _items(
                self.core.list_pod_for_all_namespaces(
                    field_selector="status.phase!=Succeeded,status.phase!=Failed",
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status == 403:
                return None
            raise
        return gpu_nodes(nodes, pods, placement.from_env(os.environ))

    def _resource(self, api_version: str, kind: str) -> Any:
        with self._discovery:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def has_resource(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves a kind (e.g. monitoring.coreos.com/v1 PodMonitor); the
        answer is kept for HAS_RESOURCE_TTL_S."""
        key, now = (api_version, kind), time.monotonic()
        known = self._has_resource.get(key)
        if known is not None and now - known[0] < HAS_RESOURCE_TTL_S:
            return known[1]
        try:
            self._resource(api_version, kind)
            found = True
        except Exception:  # the dynamic client raises ResourceNotFoundError or a 404
            found = False
        self._has_resource[key] = (now, found)
        return found


def _namespace_going_away(exc: ApiException) -> bool:
    """The API server refused a create because the namespace is terminating or already gone."""
    if exc.status == 404:
        return True
    if exc.status != 403:
        return False
    try:
        causes = (json.loads(exc.body or "{}").get("details") or {}).get("causes") or []
    except ValueError:
        return False
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)

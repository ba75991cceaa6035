"""A multi-node replica rendered as a LeaderWorkerSet group (LWS v0.7.0's API)."""

from __future__ import annotations

from typing import Any

from tests.conftest import minimal_spec
from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.domain import capacity, names, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef
from tokenscale.domain.pod_security import restricted_pod
from tokenscale_contract import interface as contract
from tokenscale_contract.config import WorkerConfig
from tokenscale_worker.launcher import build_vllm_args

REF = ServiceRef("huge", "team-a", uid="1234", generation=1)


MODEL = {"source": "hf://meta-llama/Llama-3.1-405B-Instruct", "architecture": "llama-3.1-405b"}


def group(**sections: Any) -> tuple[InferenceServiceSpec, Plan, dict[str, Any]]:
    raw = minimal_spec(**{"model": MODEL, "resources": {"gpu": "h100-80gb"}, **sections})
    spec = InferenceServiceSpec.model_validate(raw)
    plan = capacity.plan(spec, multi_node=True)
    assert isinstance(plan, Plan) and plan.nodes == 2
    return spec, plan, render.make_leaderworkerset(REF, spec, plan, scrape_annotations=True)


def test_a_group_is_two_pods_of_eight_gpus_started_and_restarted_together() -> None:
    _, _, lws = group()
    assert (lws["apiVersion"], lws["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    assert "replicas" not in lws["spec"]  # the scale subresource belongs to the autoscaler
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    assert (tmpl["size"], tmpl["restartPolicy"]) == (2, "RecreateGroupOnPodRestart")
    assert lws["spec"]["startupPolicy"] == "LeaderCreated"
    # what only LWS's own webhook would default, spelled out (its controller dereferences it)
    rolling = lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]
    assert rolling["partition"] == 0
    # 0 is refused in the leader StatefulSet by Kubernetes 1.37 (kubernetes-sigs/lws#776)
    assert rolling["maxUnavailable"] >= 1
    assert lws["spec"]["networkConfig"] == {"subdomainPolicy": "Shared"}
    for role in ("leaderTemplate", "workerTemplate"):
        pod = tmpl[role]["spec"]
        worker = pod["containers"][0]
        assert worker["resources"]["limits"][names.GPU_RESOURCE] == "8"
        assert pod["securityContext"] == restricted_pod()
        assert pod["automountServiceAccountToken"] is False
        assert any(v["name"] == "dshm" for v in pod["volumes"])  # NCCL within the node


def test_only_the_leader_serves_is_probed_and_scraped() -> None:
    _, plan, lws = group()
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    leader = tmpl["leaderTemplate"]["spec"]["containers"][0]
    worker = tmpl["workerTemplate"]["spec"]["containers"][0]
    assert "readinessProbe" in leader and leader["ports"][0]["containerPort"] == 8000
    assert not {"ports", "readinessProbe", "livenessProbe", "startupProbe"} & set(worker)
    # The drain is the leader's: its preStop and grace period let the gateway finish its streams
    # while the workers, which LWS deletes only once the leader is gone, still hold their stages.
    assert "preStop" in leader["lifecycle"] and "lifecycle" not in worker
    leader_pod = tmpl["leaderTemplate"]["spec"]
    assert leader_pod["terminationGracePeriodSeconds"] == render.DRAIN_GRACE_SECONDS
    assert "annotations" in tmpl["leaderTemplate"]["metadata"]
    assert "annotations" not in tmpl["workerTemplate"]["metadata"]
    assert render.leader_selector(REF, plan) == {
        names.SERVICE_LABEL: "huge",
        "leaderworkerset.sigs.k8s.io/worker-index": "0",
    }


def test_every_rank_gets_the_same_config_and_the_launcher_picks_its_role() -> None:
    _, _, lws = group()
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    configs = []
    for role in ("leaderTemplate", "workerTemplate"):
        env = {e["name"]: e.get("value") for e in tmpl[role]["spec"]["containers"][0]["env"]}
        configs.append(WorkerConfig.model_validate_json(env[contract.CONFIG_ENV]))
    assert configs[0] == configs[1]
    cfg = configs[0]
    assert (cfg.tensor_parallel_size, cfg.pipeline_parallel_size) == (8, 2)
    lws_env = {"LWS_GROUP_SIZE": "2", "LWS_LEADER_ADDRESS": "huge-0.huge.team-a"}
    leader = build_vllm_args(cfg, environ={**lws_env, "LWS_WORKER_INDEX": "0"})
    worker = build_vllm_args(cfg, environ={**lws_env, "LWS_WORKER_INDEX": "1"})
    assert "--headless" in worker and "--headless" not in leader


def test_a_group_mounts_the_shared_model_cache_like_a_single_node_replica() -> None:
    _, _, lws = group(model={**MODEL, "cache": {"storageClassName": "shared-rwx"}})
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        pod = tmpl[role]["spec"]
        assert pod["initContainers"][0]["command"][-1] == "wait-model"
        claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims and claims[0]["persistentVolumeClaim"]["readOnly"] is True


def test_single_node_configs_carry_no_pipeline_size() -> None:
    spec = InferenceServiceSpec.model_validate(minimal_spec())
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    dep = render.make_deployment(REF, spec, plan, scrape_annotations=False)
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "pipelineParallelSize" not in env[contract.CONFIG_ENV]
    assert render.leader_selector(REF, plan) == names.selector_labels(REF)

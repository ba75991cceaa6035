"""`tokenscale render`: the child manifests the operator would apply, for every example, are the
renderer's own output (same plan, same cap, same GPU placement), in YAML or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenscale.api.v1alpha1 import InferenceServiceSpec
from tokenscale.cli import main
from tokenscale.domain import capacity, lifecycle, render
from tokenscale.domain.capacity import Plan
from tokenscale.domain.names import ServiceRef

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_render_prints_what_the_operator_applies(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "render", "-f", str(example), "--json")
    assert code == 0
    (entry,) = json.loads(out)["services"]
    doc = yaml.safe_load(example.read_text())
    spec = InferenceServiceSpec.model_validate(doc["spec"])
    plan = capacity.plan(spec)
    assert isinstance(plan, Plan)
    ref = ServiceRef(doc["metadata"]["name"], doc["metadata"].get("namespace") or "default")
    cap = lifecycle.concurrency_cap(spec, plan, {})
    assert entry["manifests"] == render.render_all(ref, spec, plan, cap, False)
    assert entry["plan"]["gpusPerReplica"] == plan.gpus_per_replica
    # The YAML form carries the same objects, one document each, after the plan's comment.
    code, text, _ = run_cli(capsys, "render", "-f", str(example))
    assert code == 0 and text.startswith(f"# {ref.namespace}/{ref.name}: plan")
    assert [d for d in yaml.safe_load_all(text) if d] == entry["manifests"]


def test_podmonitor_and_gpu_labels_follow_the_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENSCALE_GPU_NODE_LABEL", "cloud.google.com/gke-accelerator")
    monkeypatch.setenv("TOKENSCALE_GPU_NODE_VALUES", '{"l4-24gb": ["nvidia-l4"]}')
    code, out, _ = run_cli(
        capsys, "render", "-f", str(ROOT / "examples/llama-8b-l4.yaml"), "--podmonitor", "--json"
    )
    assert code == 0
    manifests: list[dict[str, Any]] = json.loads(out)["services"][0]["manifests"]
    assert [m["kind"] for m in manifests][-1] == "PodMonitor"
    pod = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][-1]["values"] == ["nvidia-l4"]


def _bf16_405b(tmp_path: Path, gpu: str) -> Path:
    doc = yaml.safe_load((ROOT / "examples/llama-405b-fp8.yaml").read_text())
    doc["spec"]["quantization"] = {"method": "none"}
    doc["spec"]["model"].update(source="hf://meta-llama/Llama-3.1-405B-Instruct")
    doc["spec"]["model"].pop("checkpointFormat")
    doc["spec"]["resources"]["gpu"] = gpu
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_an_infeasible_service_renders_nothing_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 756 GiB of bf16 weights: more than four 8 x L4 nodes hold.
    code, out, _ = run_cli(capsys, "render", "-f", str(_bf16_405b(tmp_path, "l4-24gb")), "--json")
    assert code == 3
    (entry,) = json.loads(out)["services"]
    assert entry["manifests"] == [] and "756 GiB" in entry["plan"]["reason"]


def test_a_model_larger_than_a_node_renders_a_leaderworkerset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "render", "-f", str(_bf16_405b(tmp_path, "h100-80gb")), "--json")
    assert code == 0
    (entry,) = json.loads(out)["services"]
    kinds = {m["kind"]: m for m in entry["manifests"]}
    assert "Deployment" not in kinds
    lws = kinds["LeaderWorkerSet"]
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    selector = kinds["Service"]["spec"]["selector"]
    assert selector["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["render"], 2, "give -f MANIFEST"),
        (["render", "-f", "/nonexistent.yaml"], 4, "/nonexistent.yaml"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = run_cli(capsys, *argv)
    assert got == code
    assert err.startswith("tokenscale render: ") and message in err


def test_a_malformed_gpu_label_setting_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENSCALE_GPU_NODE_VALUES", "{nope")
    got, out, err = run_cli(capsys, "render", "-f", str(ROOT / "examples/llama-8b-l4.yaml"))
    assert got == 2 and out == ""
    assert "TOKENSCALE_GPU_NODE_VALUES is not JSON" in err

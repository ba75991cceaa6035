"""The hostile manifests `tokenscale plan -f` is given, with the exact lines it must answer."""

from __future__ import annotations

from tokenscale_contract import catalog

P = "tokenscale plan"
MODEL_CHOICES = ", ".join(repr(m) for m in sorted(catalog.MODELS))
GPU_CHOICES = ", ".join(repr(g) for g in sorted(catalog.GPUS))
HEAD = "apiVersion: tokenscale.io/v1alpha1\nkind: InferenceService\n"
SPEC = (
    "spec:\n  model:\n    source: hf://meta-llama/Llama-3.1-8B-Instruct\n"
    "    architecture: llama-3.1-8b\n  resources:\n    gpu: h100-80gb\n"
)
GOOD = HEAD + "metadata:\n  name: svc\n" + SPEC
TAG = "!!python/object/apply:os.system"
NESTED = "[" * 100_000 + "]" * 100_000
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)

# (case, file content, exit code, stderr lines with {f} for the file's path)
FILE_CASES: list[tuple[str, bytes, int, list[str]]] = [
    # The cases.
    (
        "non-yaml",
        b"a: [\n",
        4,
        [
            f"{P}: {{f}}:2:1: not valid YAML: expected the node content, but found "
            "'<stream end>' (while parsing a flow node); fix the syntax there"
        ],
    ),
    (
        "non-utf8",
        b"apiVersion: v1\nkind: \xff\xfe\n",
        4,
        [f"{P}: {{f}}:2: not UTF-8 text (byte 0xff); save the file as UTF-8"],
    ),
    (
        "list-document",
        b"- a\n- b\n",
        4,
        [
            f"{P}: {{f}}:1: the document is a list; a manifest is a mapping with apiVersion, "
            "kind, metadata and spec"
        ],
    ),
    (
        "scalar-document",
        b"42\n",
        4,
        [
            f"{P}: {{f}}:1: the document is the scalar 42; a manifest is a mapping with "
            "apiVersion, kind, metadata and spec"
        ],
    ),
    (
        "missing-spec",
        (HEAD + "metadata:\n  name: svc\n").encode(),
        4,
        [f"{P}: {{f}}:1: InferenceService 'svc' has no spec; add spec.model"],
    ),
    (
        "metadata-null",
        (HEAD + "metadata: null\n" + SPEC).encode(),
        4,
        [f"{P}: {{f}}:1: metadata must be a mapping with a name; add metadata.name"],
    ),
    (
        "python-object-tag",
        f'{TAG} ["touch /tmp/pwned"]\n'.encode(),
        4,
        [f"{P}: {{f}}:1:1: YAML tag {TAG} is not allowed; write plain YAML values"],
    ),
    (
        "python-tag-inside-spec",
        (GOOD + "  image: !!python/name:os.system\n").encode(),
        4,
        [
            f"{P}: {{f}}:11:10: YAML tag !!python/name:os.system is not allowed; write plain "
            "YAML values"
        ],
    ),
    (
        "empty-file",
        b"",
        4,
        [f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest"],
    ),
    (
        "no-inferenceservice",
        b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n",
        4,
        [
            f"{P}: {{f}}: no InferenceService among 1 document(s) (kinds: Namespace); give a "
            "file with kind: InferenceService, apiVersion: tokenscale.io/v1alpha1"
        ],
    ),
    (
        "duplicate-top-level-key",
        (GOOD + "spec: {}\n").encode(),
        4,
        [f"{P}: {{f}}:11:1: duplicate key 'spec' (first at line 5); keep only one"],
    ),
    # Our own.
    (
        "duplicate-nested-key",
        (GOOD + "    gpu: a100-80gb\n").encode(),
        4,
        [f"{P}: {{f}}:11:5: duplicate key 'gpu' (first at line 10); keep only one"],
    ),
    (
        "comments-only",
        b"# nothing here\n\n# still nothing\n",
        4,
        [f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest"],
    ),
    (
        "null-documents",
        b"---\n---\n~\n",
        4,
        [f"{P}: {{f}}: empty (no YAML documents); give an InferenceService manifest"],
    ),
    (
        "kserve-inferenceservice",
        b"apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n"
        b"  name: s\nspec: {}\n",
        4,
        [
            f"{P}: {{f}}:1: apiVersion 'serving.kserve.io/v1beta1' is not "
            "'tokenscale.io/v1alpha1'; this is not a tokenscale InferenceService"
        ],
    ),
    (
        "metadata-without-name",
        (HEAD + "metadata:\n  labels: {}\n" + SPEC).encode(),
        4,
        [f"{P}: {{f}}:1: metadata must be a mapping with a name; add metadata.name"],
    ),
    (
        "spec-null",
        (HEAD + "metadata:\n  name: svc\nspec: null\n").encode(),
        4,
        [
            f"{P}: {{f}}:5: spec: Input should be a valid dictionary or instance of "
            "InferenceServiceSpec (got None)"
        ],
    ),
    (
        "misspelled-field-and-bad-value",
        (
            GOOD.replace("    gpu: h100-80gb", "    gpux: h100-80gb").replace(
                "architecture: llama-3.1-8b", "architecture: llama-3.1-8b\n    maxModelLen: 10"
            )
        ).encode(),
        4,
        [
            f"{P}: {{f}}:9: spec.model.maxModelLen: Input should be greater than or equal "
            "to 256 (got 10)",
            f"{P}: {{f}}:11: spec.resources.gpu: required; add it",
            f"{P}: {{f}}:11: spec.resources.gpux: unknown field; remove it or correct its spelling",
        ],
    ),
    (
        "control-character",
        (GOOD + "# \x00\n").encode(),
        4,
        [f"{P}: {{f}}:11: character U+0000 is not allowed in YAML; remove it"],
    ),
    (
        "nested-100000-deep",
        NESTED.encode(),
        4,
        [f"{P}: {{f}}: nested too deeply to read; not a manifest"],
    ),
    (
        "billion-laughs",
        LAUGHS.encode(),
        4,
        [
            f"{P}: {{f}}: no InferenceService among 1 document(s) (kinds: None); give a file "
            "with kind: InferenceService, apiVersion: tokenscale.io/v1alpha1"
        ],
    ),
    (
        "tab-indentation",
        (HEAD + "metadata:\n\tname: svc\n").encode(),
        4,
        [
            f"{P}: {{f}}:4:1: not valid YAML: found character '\\t' that cannot start any "
            "token (while scanning for the next token); fix the syntax there"
        ],
    ),
    (
        "utf16-file",
        GOOD.encode("utf-16"),
        4,
        [f"{P}: {{f}}:1: not UTF-8 text (byte 0xff); save the file as UTF-8"],
    ),
    (
        "one-good-one-bad-document",
        (GOOD + "---\n" + HEAD + "metadata:\n  name: two\n").encode(),
        4,
        [f"{P}: {{f}}:12: InferenceService 'two' has no spec; add spec.model"],
    ),
    (
        "larger-than-8-mib",
        b"# " + b"x" * (8 * 1024 * 1024) + b"\n",
        4,
        [f"{P}: {{f}}: larger than 8388608 bytes; not a manifest"],
    ),
]

"""Reading InferenceService manifests for `tokenscale plan -f`: every way a file can be wrong
becomes one line naming the file, the line and the fix (`CliError`), never a traceback.

YAML is read with the safe loader (no Python tags) plus one rule the API server also enforces:
a key twice in one mapping is an error, not "the last one wins".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tokenscale.api.v1alpha1 import API_VERSION, KIND, InferenceService, InferenceServiceSpec
from tokenscale.cli.usage import CliError, validation_lines

# etcd refuses objects over 1.5 MiB; a manifest file of many objects gets room for a few dozen.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Manifest:
    """One InferenceService found in a file: `path:line name` and its parsed spec."""

    label: str
    spec: InferenceServiceSpec


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a key that appears twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: the base loader names it
                continue
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen}); keep only one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise CliError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise CliError(f"{path}: is a directory; give a manifest file (-f FILE)")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise CliError(
            f"{path}: cannot read ({e.strerror}); check the path and permissions"
        ) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise CliError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; not a manifest")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CliError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None


def _yaml_problem(path: Path, error: yaml.YAMLError, text: str) -> CliError:
    mark = getattr(error, "problem_mark", None)
    if mark is None and isinstance(error, yaml.reader.ReaderError):
        line = text[: error.position].count("\n") + 1
        char = error.character
        code = char if isinstance(char, int) else ord(char)
        return CliError(f"{path}:{line}: character U+{code:04X} is not allowed in YAML; remove it")
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = str(getattr(error, "problem", "") or error).strip()
    if "could not determine a constructor" in problem:
        tag = problem.split("'")[1] if problem.count("'") >= 2 else problem
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return CliError(f"{where}: YAML tag {tag} is not allowed; write plain YAML values")
    if problem.startswith("duplicate key"):
        return CliError(f"{where}: {problem}")
    context = getattr(error, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return CliError(f"{where}: not valid YAML: {detail}; fix the syntax there")


def _documents(path: Path, text: str) -> list[tuple[yaml.Node, Any]]:
    documents = []
    try:
        loader = _StrictLoader(text)  # checks every character up front
    except yaml.YAMLError as e:
        raise _yaml_problem(path, e, text) from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                documents.append((node, loader.construct_document(node)))
    except yaml.YAMLError as e:
        raise _yaml_problem(path, e, text) from None
    except RecursionError:
        raise CliError(f"{path}: nested too deeply to read; not a manifest") from None
    finally:
        loader.dispose()
    return documents


def _line_of(node: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest node along a pydantic error location (1-based)."""
    for part in loc:
        children: list[Any] = node.value if isinstance(node.value, list) else []
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in children if k.value == part]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            match = children[part : part + 1]
        else:
            match = []
        if not match:
            break
        node = match[0]
    return int(node.start_mark.line) + 1


def _kind_problem(path: Path, line: int, doc: Any) -> str | None:
    """None for a tokenscale InferenceService, else why this document is refused."""
    if not isinstance(doc, dict):
        shown = repr(doc) if len(repr(doc)) <= 40 else repr(doc)[:37] + "..."
        shape = "a list" if isinstance(doc, list) else f"the scalar {shown}"
        return (
            f"{path}:{line}: the document is {shape}; a manifest is a mapping with "
            "apiVersion, kind, metadata and spec"
        )
    version = doc.get("apiVersion")
    if version != API_VERSION:
        return (
            f"{path}:{line}: apiVersion {version!r} is not {API_VERSION!r}; "
            f"this is not a tokenscale {KIND}"
        )
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return f"{path}:{line}: metadata must be a mapping with a name; add metadata.name"
    if "spec" not in doc:
        return f"{path}:{line}: {KIND} {metadata['name']!r} has no spec; add spec.model"
    return None


def _manifest(path: Path, node: yaml.Node, doc: dict[str, Any]) -> Manifest:
    line = node.start_mark.line + 1
    problem = _kind_problem(path, line, doc)
    if problem:
        raise CliError(problem)
    body = {k: v for k, v in doc.items() if k != "status"}  # `kubectl get -o yaml` output
    try:
        service = InferenceService.model_validate(body)
    except ValidationError as e:
        lines = validation_lines(e, where=lambda loc: f"{path}:{_line_of(node, loc)}")
        raise CliError("\n".join(lines)) from None
    return Manifest(f"{path}:{line} {doc['metadata']['name']}", service.spec)


def _is_service(doc: Any) -> bool:
    return not isinstance(doc, dict) or doc.get("kind") == KIND


def read_manifests(path: Path) -> list[Manifest]:
    """Every tokenscale InferenceService in the file; other kinds (a Namespace, a Secret) are
    skipped; a file with none, or an empty one, is an error."""
    documents = [(node, doc) for node, doc in _documents(path, _read_text(path)) if doc is not None]
    if not documents:
        raise CliError(f"{path}: empty (no YAML documents); give an {KIND} manifest")
    services = [(node, doc) for node, doc in documents if _is_service(doc)]
    if not services:
        kinds = sorted({str(doc.get("kind")) for _, doc in documents})
        raise CliError(
            f"{path}: no {KIND} among {len(documents)} document(s) (kinds: {', '.join(kinds)}); "
            f"give a file with kind: {KIND}, apiVersion: {API_VERSION}"
        )
    found: list[Manifest] = []
    problems: list[str] = []
    for node, doc in services:
        try:
            found.append(_manifest(path, node, doc))
        except CliError as e:
            problems.append(str(e))
    if problems:
        raise CliError("\n".join(problems))
    return found

"""CEL rules for `spec.engine`, generated from the worker contract so the API server refuses what
the launcher refuses: `image` must be an image reference, and `extraArgs` may not set an option
the spec owns, however it is spelled (vLLM's abbreviations, `=` forms, `_` for `-`, glued short
options), as far as a per-item regular expression can tell.

For each refusal group one RE2 expression matches every spelling vLLM's parser could resolve to a
refused option (snapshot of vLLM's option table: tokenscale_contract.vllm_options), minus the
options that are allowed and spelled out exactly (`-dc` is allowed though it begins `-dcp`).
The operator gives the precise per-argument message (tokenscale_contract.extra_args_guard); these
rules give the API server the same verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenscale.api.v1alpha1.base import Rule
from tokenscale_contract.extra_args_policy import REFUSED, Group
from tokenscale_contract.vllm_options import table

# A container image reference (distribution/reference grammar, ASCII only): optional registry
# host[:port]/, lowercase path components, optional :tag, optional @sha256:digest.
IMAGE_PATTERN = (
    "^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?([.][a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*"
    "(:[0-9]+)?/)?[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*)*"
    "(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
IMAGE_RULE = Rule(
    # has(): the API server also checks the rule against the CRD's default for engine ({}).
    "!has(self.image) || self.image.matches('" + IMAGE_PATTERN + "')",
    "spec.engine.image must be an image reference such as registry.example.com/team/worker:1.2 "
    "or name@sha256:<64 hex digits>: lowercase repository path, no spaces or shell characters",
)


def _literal(text: str) -> str:
    """`text` as RE2 without backslashes (a CEL string literal would need them doubled): option
    names hold only letters, digits and dashes; a dot becomes a class."""
    return text.replace(".", "[.]")


def _dashes(name: str) -> str:
    """A long option name where each `-` may also be written `_`."""
    return "[-_]".join(_literal(part) for part in name.split("-"))


def _group_of(dest: str) -> Group | None:
    refusal = REFUSED.get(dest)
    return refusal.group if refusal else None


def _prefix_regex(words: Iterable[str]) -> str:
    """RE2 matching every non-empty prefix of any of `words` (a trie written as nested optional
    groups); `-` also matches `_` (vLLM rewrites `_` to `-` in option names)."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        if word:
            by_first.setdefault(word[0], []).append(word[1:])
    parts = []
    for char, tails in sorted(by_first.items()):
        atom = "[-_]" if char == "-" else _literal(char)
        rest = _prefix_regex(tails)
        parts.append(atom + (f"({rest})?" if rest else ""))
    if len(parts) <= 1:
        return "".join(parts)
    return "(" + "|".join(parts) + ")"


def _short_spellings(name: str) -> list[str]:
    """argparse spellings of a single-dash option: itself, its proper prefixes (`-t` for `-tp`),
    and for a two-character option anything glued to it (`-qfp8`)."""
    # A prefix stands alone or before a dotted key (`-t.x 1`, which vLLM folds into `-t <json>`).
    found = [_literal(name[:n]) + "([.].*)?" for n in range(2, len(name))]
    found.append(_literal(name) + (".*" if len(name) == 2 else "([=.].*)?"))
    return found


def refused_pattern(group: Group) -> str:
    """One RE2 expression for every spelling of the group's refused options."""
    names = [n for n, o in table().options.items() if _group_of(o.dest) == group]
    longs = [n[2:] for n in names if n.startswith("--")]
    shorts = [s for n in names if not n.startswith("--") for s in _short_spellings(n)]
    branches = list(dict.fromkeys(shorts))
    if longs:
        branches.insert(0, "--" + _prefix_regex(longs) + "([=.].*)?")
    return "^(" + "|".join(branches) + ")$"


def allowed_exceptions(group: Group) -> str | None:
    """RE2 for allowed options spelled out exactly that the group's pattern would also match."""
    pattern = re.compile(refused_pattern(group))
    clash = [
        n for n, o in table().options.items() if o.dest not in REFUSED and pattern.fullmatch(n)
    ]
    if not clash:
        return None
    spelled = ["--" + _dashes(n[2:]) if n.startswith("--") else _literal(n) for n in sorted(clash)]
    return "^(" + "|".join(spelled) + ")([=.].*)?$"


_GROUP_MESSAGES: dict[Group, str] = {
    "parallel": "spec.engine.extraArgs sets, perhaps abbreviated (--tensor-parallel=8, -dp 4), "
    "tensor, pipeline, data or context parallelism or multi-node options: tokenscale plans them; "
    "set spec.resources.gpusPerReplica (one replica on one node) and spec.scaling instead",
    "plan": "spec.engine.extraArgs sets, perhaps abbreviated (--max-model=8192, -qfp8), an "
    "option tokenscale plans: set spec.quantization.method (--quantization), "
    "spec.model.maxModelLen, spec.model.dtype, or spec.engine.gpuMemoryUtilization, maxNumSeqs, "
    "maxNumBatchedTokens, enablePrefixCaching, enableChunkedPrefill instead",
    "model": "spec.engine.extraArgs sets, perhaps abbreviated, the model, its name, revision or "
    "tokenizer: set spec.model.source, spec.model.servedName or spec.model.revision instead",
    "contract": "spec.engine.extraArgs sets, perhaps abbreviated, an option the worker contract "
    "fixes (--host, --port, --uds, TLS, --headless, --disable-log-stats, "
    "--custom-histogram-buckets, --download-dir, --help): the gateway reaches the engine over "
    "plain HTTP on 127.0.0.1:8001 and the autoscaler reads its metrics; remove it",
    "code": "spec.engine.extraArgs sets, perhaps abbreviated, an option that makes vLLM read "
    "files or run code from outside the image (--trust-remote-code, --config, "
    "--allowed-local-media-path, --chat-template, plugins, ...); remove it",
    "secret": "spec.engine.extraArgs carries a secret (--hf-token, --api-key) that would be "
    "stored in plain text; remove it and reference a Secret in spec.secrets",
}


def _extra_args_rule(group: Group) -> Rule:
    refused = "a.matches('" + refused_pattern(group) + "')"
    allowed = allowed_exceptions(group)
    if allowed:
        refused = "(" + refused + " && !a.matches('" + allowed + "'))"
    return Rule(
        "!has(self.extraArgs) || self.extraArgs.all(a, !" + refused + ")",
        _GROUP_MESSAGES[group],
    )


GROUPS: tuple[Group, ...] = ("parallel", "plan", "model", "contract", "code", "secret")
EXTRA_ARGS_RULES: tuple[Rule, ...] = tuple(_extra_args_rule(group) for group in GROUPS)

"""Evaluate the CRD's CEL rules in Python, so the operator and `tokenscale plan -f` give exactly
the API server's verdict: one rule text, two evaluators (kube-apiserver's cel-go and cel-python),
both with RE2 regular expressions (`\\s` means [\\t\\n\\f\\r ] in both, not Python's wider class).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

_ENV = celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(rule))


def compiles(rule: str) -> bool:
    """Whether `rule` is valid CEL (the generator refuses to write a rule that is not)."""
    try:
        _program(rule)
    except CELParseError:
        return False
    return True


def holds(rule: str, obj: Any) -> bool:
    """True when `rule` evaluates to true with `self` bound to `obj` (a JSON-like value, as the
    API server sees the object after defaulting). An evaluation error counts as a failed rule,
    as it does in the API server."""
    # cel-python interprets a parse tree (about a millisecond a rule); the autoscaler re-reads
    # every spec each tick, and specs rarely change, so verdicts are remembered by content.
    return _holds(rule, json.dumps(obj, sort_keys=True))


@functools.lru_cache(maxsize=16384)
def _holds(rule: str, obj_json: str) -> bool:
    try:
        result = _program(rule).evaluate({"self": json_to_cel(json.loads(obj_json))})
    except CELEvalError:
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)

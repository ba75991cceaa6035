"""Print vLLM's `vllm serve` option table as JSON: option string -> destination and arity.

Run it inside an environment with vLLM installed (worker_image/scripts/vllm-env.sh builds one):

    VLLM_TARGET_DEVICE=cpu "$(worker_image/scripts/vllm-env.sh)" hack/vllm_options_snapshot.py \
        > contract/tokenscale_contract/vllm_options.json

The launcher's extraArgs guard (tokenscale_contract.vllm_options) resolves arguments against this
snapshot the way vLLM's FlexibleArgumentParser does; the contract test
(tests/worker/test_vllm_contract.py) checks the snapshot equals the live parser's table.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def arity(action: argparse.Action) -> str:
    """'0' (a switch), '1' (one value), or argparse's '?', '*', '+'."""
    if action.nargs is None:
        return "1"
    return str(action.nargs)


def option_table(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """option string -> [dest, arity], sorted by option string."""
    table: dict[str, list[str]] = {}
    for action in parser._actions:
        for option in action.option_strings:
            table[option] = [action.dest, arity(action)]
    return dict(sorted(table.items()))


def snapshot() -> dict[str, Any]:
    import vllm
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    return {"vllm": vllm.__version__.split("+")[0], "options": option_table(parser)}


def render(snap: dict[str, Any]) -> str:
    """JSON with one option per line, so a vLLM upgrade reads as a short diff."""
    rows = [f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in snap["options"].items()]
    return (
        "{\n"
        + f' "vllm": {json.dumps(snap["vllm"])},\n "options": {{\n'
        + ",\n".join(rows)
        + "\n }\n}\n"
    )


if __name__ == "__main__":
    sys.stdout.write(render(snapshot()))

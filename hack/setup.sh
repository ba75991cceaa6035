#!/usr/bin/env bash
# Install or build everything the tests use, once, outside any test's timeout (make setup; make test
# and make e2e run it first). Idempotent and resumable: each part checks its own cache, and an
# interrupted run leaves no lock held and no orphan build, so running it again picks up where it
# stopped.
#
# Parts (all under ${XDG_CACHE_HOME:-~/.cache}/tokenscale):
#   cluster   Prometheus (Debian package, unpacked), kube-apiserver, controller-manager, scheduler,
#             kubectl, etcd, kwok, kwokctl, Helm, LeaderWorkerSet: e2e/cluster/build.sh
#   vllm      real vLLM (CPU build) for the contract test and the real-engine tests:
#             worker_image/scripts/vllm-env.sh
#   model     the tiny Llama model the real-engine tests serve, built from a fixed seed with the
#             vLLM environment's python, its files' sha256 checked: worker_image/scripts/tiny_model.py
#   wheels    two clean environments, one per image, with only that image's distributions and
#             their dependencies (the wheel test installs this checkout's wheels into them):
#             hack/wheel-venvs.sh
# The vLLM download and the Go builds run side by side (one waits on the network, the other on
# the CPU); each prints progress lines.
#
#   bash hack/setup.sh            # everything
#   bash hack/setup.sh cluster    # one part
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
say() { printf '[setup %4ds] %s\n' "$((SECONDS - START))" "$*"; }
parts=("$@")
(( ${#parts[@]} )) || parts=(cluster vllm model wheels)

want() { local p; for p in "${parts[@]}"; do [[ $p == "$1" ]] && return 0; done; return 1; }

bg_pid=""
cleanup() { [[ -n "$bg_pid" ]] && kill "$bg_pid" 2>/dev/null; wait 2>/dev/null; }
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM HUP

if want vllm; then
  if bash worker_image/scripts/vllm-env.sh --check 2>/dev/null; then
    say "vllm: cached ($(bash worker_image/scripts/vllm-env.sh --print))"
  else
    say "vllm: building in the background (progress lines start with [vllm-env])"
    bash worker_image/scripts/vllm-env.sh >/dev/null &
    bg_pid=$!
  fi
fi

if want cluster; then
  say "cluster: building what is missing (progress lines start with [build])"
  bash e2e/cluster/build.sh
fi

if [[ -n "$bg_pid" ]]; then
  say "vllm: waiting for the background build"
  if ! wait "$bg_pid"; then
    bg_pid=""
    say "vllm: FAILED (see the [vllm-env] lines above; run 'bash worker_image/scripts/vllm-env.sh' to retry)"
    exit 1
  fi
  bg_pid=""
  say "vllm: ready"
fi

if want model; then
  # Needs the vLLM environment (torch, transformers, tokenizers): after the vllm part.
  VLLM_PY="$(bash worker_image/scripts/vllm-env.sh --print)"
  [[ -x "$VLLM_PY" ]] || { say "model: needs the vllm part first (bash hack/setup.sh vllm model)"; exit 1; }
  if "$VLLM_PY" worker_image/scripts/tiny_model.py --check 2>/dev/null; then
    say "model: cached ($("$VLLM_PY" worker_image/scripts/tiny_model.py --print))"
  else
    say "model: building the tiny model"
    HF_HUB_OFFLINE=1 "$VLLM_PY" worker_image/scripts/tiny_model.py >/dev/null
    say "model: ready"
  fi
fi
if want wheels; then
  bash hack/wheel-venvs.sh
fi
say "done: every tool the tests use is installed"

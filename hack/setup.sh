#!/usr/bin/env bash
# Install or build everything the tests use, once, outside any test's timeout (make setup; make test
# and make e2e run it first). Idempotent and resumable: each part checks its own cache, and an
# interrupted run leaves no lock held and no orphan build, so running it again picks up where it
# stopped.
#
# Parts (all under ${XDG_CACHE_HOME:-~/.cache}/tokenscale):
#   cluster   Prometheus (Debian package, unpacked), kube-apiserver, controller-manager, scheduler,
#             kubectl, etcd, kwok, kwokctl, Helm: e2e/cluster/build.sh
#   vllm      real vLLM (CPU build) for the contract test and the real-engine tests:
#             worker_image/scripts/vllm-env.sh
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
(( ${#parts[@]} )) || parts=(cluster vllm)

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
say "done: every tool the tests use is installed"

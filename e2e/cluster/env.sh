#!/usr/bin/env bash
# Environment for the local e2e cluster: binaries built by build.sh and the kubeconfig written by up.sh.
#
#   source e2e/cluster/env.sh            # in a shell: exports the variables below
#   eval "$(bash e2e/cluster/env.sh)"    # same, from any shell
#   bash e2e/cluster/env.sh              # prints `export NAME=value` lines (tests parse these)
#
# Exports: KUBECONFIG, KUBECTL, HELM, KWOKCTL, PROMETHEUS_BIN, TOKENSCALE_CACHE, TOKENSCALE_CLUSTER_NAME,
# and PATH with the cached binaries' folders first.
# With TOKENSCALE_E2E_EXISTING_CLUSTER=1 and KUBECONFIG already set, KUBECONFIG is left as it is (an
# existing cluster: kind, k3d, a real one), and kubectl/helm fall back to the ones on PATH when no
# cached build exists.

_ts_cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOKENSCALE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale"
TOKENSCALE_CLUSTER_NAME="${TOKENSCALE_CLUSTER_NAME:-tokenscale}"

_ts_paths="$(bash "$_ts_cluster_dir/build.sh" --print)"
_ts_path_of() { sed -n "s/^$1=//p" <<<"$_ts_paths"; }

KUBECTL="$(_ts_path_of kubectl)"
HELM="$(_ts_path_of helm)"
KWOKCTL="$(_ts_path_of kwokctl)"
PROMETHEUS_BIN="$(_ts_path_of prometheus)"
[[ -x "$KUBECTL" ]] || KUBECTL="$(command -v kubectl || echo "$KUBECTL")"
[[ -x "$HELM" ]] || HELM="$(command -v helm || echo "$HELM")"

if [[ "${TOKENSCALE_E2E_EXISTING_CLUSTER:-0}" == "1" && -n "${KUBECONFIG:-}" ]]; then
  :  # keep the user's KUBECONFIG
else
  KUBECONFIG="$TOKENSCALE_CACHE/kubeconfig"
fi

_ts_prepend=""
for _ts_b in "$KUBECTL" "$HELM" "$KWOKCTL" "$(_ts_path_of kwok)" "$(_ts_path_of etcd)" "$PROMETHEUS_BIN"; do
  _ts_d="$(dirname "$_ts_b")"
  case ":$PATH:$_ts_prepend:" in *":$_ts_d:"*) ;; *) _ts_prepend="${_ts_prepend:+$_ts_prepend:}$_ts_d" ;; esac
done
PATH="${_ts_prepend:+$_ts_prepend:}$PATH"

export KUBECONFIG KUBECTL HELM KWOKCTL PROMETHEUS_BIN TOKENSCALE_CACHE TOKENSCALE_CLUSTER_NAME PATH
# kwokctl keeps its cluster state under our cache and runs our kubectl, not a downloaded one.
export KWOK_WORKDIR="$TOKENSCALE_CACHE/kwok"
export KWOK_KUBECTL_BINARY="$KUBECTL"

unset _ts_b _ts_d _ts_prepend _ts_paths
unset -f _ts_path_of

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # Executed, not sourced: print the environment for eval or for a test harness.
  for _ts_v in KUBECONFIG KUBECTL HELM KWOKCTL PROMETHEUS_BIN TOKENSCALE_CACHE TOKENSCALE_CLUSTER_NAME \
    KWOK_WORKDIR KWOK_KUBECTL_BINARY PATH; do
    printf 'export %s=%q\n' "$_ts_v" "${!_ts_v}"
  done
fi
unset _ts_cluster_dir _ts_v

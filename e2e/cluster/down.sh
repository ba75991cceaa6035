#!/usr/bin/env bash
# Stop and delete the local e2e cluster started by up.sh (its etcd data goes with it), and stop its
# LeaderWorkerSet controller (lws-manager, a host process up.sh started through lws.sh).
# The cached binaries stay; the next up.sh is a warm start.
#
#   bash e2e/cluster/down.sh     (or: make cluster-down)
#
# With TOKENSCALE_E2E_EXISTING_CLUSTER=1 it does nothing: a cluster we did not start is not ours to delete.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "${TOKENSCALE_E2E_EXISTING_CLUSTER:-0}" == "1" ]]; then
  echo "down.sh: TOKENSCALE_E2E_EXISTING_CLUSTER=1: leaving the existing cluster alone" >&2
  exit 0
fi

# kwokctl logs JSON lines when not on a terminal: keep "msg (elapsed)" of each.
kwok_log() {
  sed -u -E -e '/^\{.*"msg":/!b' \
    -e 's/^.*"msg":"([^"]*)"(.*"human":"([^"]*)")?.*$/kwokctl: \1 \3/' >&2
}

# shellcheck source=env.sh
source "$HERE/env.sh"
if [[ ! -x "$KWOKCTL" ]]; then
  echo "down.sh: kwokctl is not built ($KWOKCTL): no cluster to delete" >&2
  exit 0
fi
# The LWS manager first, whether or not kwokctl still knows the cluster: it is not a kwokctl
# component, so the delete would not stop it, and its state goes with the cluster's directory.
bash "$HERE/lws.sh" stop
if ! "$KWOKCTL" get clusters 2>/dev/null | grep -qx "$TOKENSCALE_CLUSTER_NAME"; then
  echo "down.sh: no cluster '$TOKENSCALE_CLUSTER_NAME'" >&2
  rm -f "$KUBECONFIG"
  exit 0
fi
"$KWOKCTL" delete cluster --name "$TOKENSCALE_CLUSTER_NAME" --kubeconfig "$KUBECONFIG" 2>&1 | kwok_log
rm -f "$KUBECONFIG"
echo "down.sh: cluster '$TOKENSCALE_CLUSTER_NAME' deleted" >&2

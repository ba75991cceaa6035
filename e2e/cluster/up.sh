#!/usr/bin/env bash
# Start the local e2e cluster: a real etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# started by `kwokctl --runtime binary` from the binaries build.sh caches, plus the kwok controller
# that plays the kubelet for the fake GPU nodes in nodes.yaml.
#
#   bash e2e/cluster/up.sh     (or: make cluster-up)
#
# Idempotent: when the cluster is already up and healthy it only prints the kubeconfig path.
# With TOKENSCALE_E2E_EXISTING_CLUSTER=1 and KUBECONFIG set it starts nothing and only checks that
# the cluster in KUBECONFIG answers.
# The last line printed is always the kubeconfig path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T0=$SECONDS
# kwokctl logs JSON lines when not on a terminal: keep "msg (elapsed)" of each.
kwok_log() {
  sed -u -E -e '/^\{.*"msg":/!b' \
    -e 's/^.*"msg":"([^"]*)"(.*"human":"([^"]*)")?.*$/kwokctl: \1 \3/' >&2
}
say() { printf '[cluster-up %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }

# ---- an existing cluster chosen by the user -------------------------------------------------------
if [[ "${TOKENSCALE_E2E_EXISTING_CLUSTER:-0}" == "1" ]]; then
  if [[ -z "${KUBECONFIG:-}" ]]; then
    echo "up.sh: TOKENSCALE_E2E_EXISTING_CLUSTER=1 needs KUBECONFIG set to the cluster to use" >&2
    exit 2
  fi
  # shellcheck source=env.sh
  source "$HERE/env.sh"
  if ! "$KUBECTL" get --raw /readyz --request-timeout=10s >/dev/null; then
    echo "up.sh: the cluster in KUBECONFIG=$KUBECONFIG does not answer /readyz" >&2
    exit 1
  fi
  say "using the existing cluster in KUBECONFIG (nothing started)"
  echo "$KUBECONFIG"
  exit 0
fi

# shellcheck source=env.sh
source "$HERE/env.sh"
NAME="$TOKENSCALE_CLUSTER_NAME"

healthy() {
  [[ -s "$KUBECONFIG" ]] &&
    "$KUBECTL" get --raw /readyz --request-timeout=3s >/dev/null 2>&1 &&
    "$KWOKCTL" get clusters 2>/dev/null | grep -qx "$NAME" &&
    nodes_alive
}

# nodes_alive: every kwok node's lease was renewed within its duration, i.e. a live kwok controller
# plays its kubelet. An API server that answers is not enough: with the controller gone, pods are
# scheduled and never become Ready.
nodes_alive() {
  local leases
  leases="$("$KUBECTL" get lease -n kube-node-lease -o json --request-timeout=5s 2>/dev/null)" || return 1
  python3 -c '
import datetime, json, sys
items = json.load(sys.stdin)["items"]
now = datetime.datetime.now(datetime.timezone.utc)
def fresh(lease):
    spec = lease["spec"]
    renewed = datetime.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
    return (now - renewed).total_seconds() < spec["leaseDurationSeconds"]
sys.exit(0 if items and all(fresh(l) for l in items) else 1)
' <<<"$leases"
}

if healthy; then
  say "cluster '$NAME' is already up"
  echo "$KUBECONFIG"
  exit 0
fi

# ---- binaries (a cache hit is a no-op) ------------------------------------------------------------
bash "$HERE/build.sh" >&2
source "$HERE/env.sh"

paths="$(bash "$HERE/build.sh" --print)"
path_of() { sed -n "s/^$1=//p" <<<"$paths"; }

# ---- a cluster left stopped or half-alive (e.g. processes killed): recreate it -----------------------
# Not restarted in place: the node leases still name the dead kwok controller, and a new one waits
# out their 200 s duration before it marks any pod Ready. The cluster holds only test state, and a
# fresh one also drops namespaces an interrupted run left behind.
if "$KWOKCTL" get clusters 2>/dev/null | grep -qx "$NAME"; then
  say "cluster '$NAME' exists but is not healthy: recreating it"
  "$KWOKCTL" delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG" 2>&1 | kwok_log || true
fi

if ! healthy; then
  mkdir -p "$(dirname "$KUBECONFIG")"
  say "creating cluster '$NAME' (kwokctl --runtime binary)"
  "$KWOKCTL" create cluster \
    --name "$NAME" \
    --runtime binary \
    --kubeconfig "$KUBECONFIG" \
    --kube-apiserver-binary "$(path_of kube-apiserver)" \
    --kube-controller-manager-binary "$(path_of kube-controller-manager)" \
    --kube-scheduler-binary "$(path_of kube-scheduler)" \
    --kwok-controller-binary "$(path_of kwok)" \
    --etcd-binary "$(path_of etcd)" \
    --disable-qps-limits \
    --wait 60s \
    --timeout 120s 2>&1 | kwok_log
fi

# ---- ready for workloads --------------------------------------------------------------------------
"$KUBECTL" config use-context "kwok-$NAME" >/dev/null
until "$KUBECTL" get --raw /readyz --request-timeout=3s >/dev/null 2>&1; do
  (( SECONDS - T0 < 120 )) || { say "kube-apiserver not ready after 120 s"; exit 1; }
  sleep 0.5
done
# Pods are admitted only once the controller-manager has created the namespace's service account.
until "$KUBECTL" -n default get serviceaccount default >/dev/null 2>&1; do
  (( SECONDS - T0 < 120 )) || { say "no default service account after 120 s (kube-controller-manager down?)"; exit 1; }
  sleep 0.5
done

say "applying the fake GPU nodes"
"$KUBECTL" apply -f "$HERE/nodes.yaml" >/dev/null
"$KUBECTL" wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null
until nodes_alive; do
  (( SECONDS - T0 < 180 )) || { say "kwok holds no fresh lease for every node after 180 s (kwok-controller down?)"; exit 1; }
  sleep 0.5
done
"$KUBECTL" get nodes -L tokenscale.io/gpu -L nvidia.com/gpu.product >&2

say "cluster '$NAME' is up (kubeconfig below; or: source e2e/cluster/env.sh)"
echo "$KUBECONFIG"

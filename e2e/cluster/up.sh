#!/usr/bin/env bash
# Start the local e2e cluster: a real etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# started by `kwokctl --runtime binary` from the binaries build.sh caches, plus the kwok controller
# that plays the kubelet for the fake GPU nodes in nodes.yaml, plus the real LeaderWorkerSet
# controller (lws-manager, with its CRD and webhooks) as a host process: lws.sh.
#
#   bash e2e/cluster/up.sh     (make cluster-up builds what is missing first; this script never builds:
#                               it fails naming `make setup` when a binary is missing)
#
# Idempotent: when the cluster is already up and healthy it only starts the LWS controller if that
# is not running (killed alone, or a cluster created before up.sh ran one), and prints the kubeconfig
# path. Either way it returns only once the LWS webhook answers.
# Each wait has its own budget, counted from the start of that wait.
# With TOKENSCALE_E2E_EXISTING_CLUSTER=1 and KUBECONFIG set it starts nothing and only checks that
# the cluster in KUBECONFIG answers (and says so when it has no LeaderWorkerSet CRD).
# The last line printed is always the kubeconfig path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T0=$SECONDS
# shellcheck source=lib.sh
source "$HERE/lib.sh"
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
  # Not ours to install into: only say so when tests that need LeaderWorkerSets will fail there.
  if ! "$KUBECTL" get crd leaderworkersets.leaderworkerset.x-k8s.io --request-timeout=10s >/dev/null 2>&1; then
    say "note: no LeaderWorkerSet CRD in this cluster: multi-node tests need LWS (v0.7.0) installed"
  fi
  say "using the existing cluster in KUBECONFIG (nothing started)"
  echo "$KUBECONFIG"
  exit 0
fi

# shellcheck source=env.sh
source "$HERE/env.sh"
NAME="$TOKENSCALE_CLUSTER_NAME"

# Two starts at once wait for each other. The lock is on a descriptor that the cluster's processes
# do not inherit (kwokctl runs with it closed), so it is released when this script ends, however.
mkdir -p "$TOKENSCALE_CACHE"
exec 8>"$TOKENSCALE_CACHE/up.lock"
if ! flock -n 8; then
  say "another cluster start holds $TOKENSCALE_CACHE/up.lock; waiting for it"
  flock 8
fi

# The kwok stages the cluster was created with (kwok-stages.yaml): a cluster made from other ones
# (an older checkout) is recreated, not reused.
STAGES="$HERE/kwok-stages.yaml"
STAGES_STAMP="$TOKENSCALE_CACHE/cluster-$NAME.stages"
stages_current() {
  [[ -f "$STAGES_STAMP" ]] && [[ "$(cat "$STAGES_STAMP")" == "$(sha256sum <"$STAGES")" ]]
}

healthy() {
  stages_current &&
  [[ -s "$KUBECONFIG" ]] &&
    "$KUBECTL" get --raw /readyz --request-timeout=3s >/dev/null 2>&1 &&
    "$KWOKCTL" get clusters 2>/dev/null | grep -qx "$NAME" &&
    nodes_alive
}

# nodes_alive: every kwok node's lease was renewed within its duration, i.e. a live kwok controller
# plays its kubelet; and the controller-manager's and scheduler's leader leases too. An API server
# that answers is not enough: with the controller gone, pods are scheduled and never become Ready;
# with the controller-manager or scheduler gone (an interrupted run took them), none is created.
nodes_alive() {
  local leases
  leases="$("$KUBECTL" get lease -A -o json --request-timeout=5s 2>/dev/null)" || return 1
  python3 -c '
import datetime, json, sys
items = json.load(sys.stdin)["items"]
now = datetime.datetime.now(datetime.timezone.utc)
def fresh(lease):
    spec = lease["spec"]
    if not spec.get("renewTime"):
        return False
    renewed = datetime.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
    return (now - renewed).total_seconds() < spec["leaseDurationSeconds"]
nodes = [l for l in items if l["metadata"]["namespace"] == "kube-node-lease"]
leaders = [l for l in items if l["metadata"]["namespace"] == "kube-system"
           and l["metadata"]["name"] in ("kube-controller-manager", "kube-scheduler")]
sys.exit(0 if nodes and len(leaders) == 2 and all(map(fresh, nodes + leaders)) else 1)
' <<<"$leases"
}

if healthy; then
  say "cluster '$NAME' is already up"
  # The control plane can be alive without its LWS controller: the manager killed alone, or a cluster
  # created before up.sh started one. Start it then; a no-op when it runs and its webhook answers.
  if ! bash "$HERE/lws.sh" start 8>&-; then
    say "the LeaderWorkerSet controller did not start (log above)"
    exit 1
  fi
  echo "$KUBECONFIG"
  exit 0
fi

# ---- binaries: built by `make setup`, never here (a build inside a test's timeout was killed half way)
if ! bash "$HERE/build.sh" --check; then
  say "the cluster binaries are not built: run 'make setup' (or 'bash e2e/cluster/build.sh') first"
  exit 1
fi

paths="$(bash "$HERE/build.sh" --print)"
path_of() { sed -n "s/^$1=//p" <<<"$paths"; }

# ---- a cluster left stopped or half-alive (e.g. processes killed): recreate it -----------------------
# Not restarted in place: the node leases still name the dead kwok controller, and a new one waits
# out their 200 s duration before it marks any pod Ready. The cluster holds only test state, and a
# fresh one also drops namespaces an interrupted run left behind.
if "$KWOKCTL" get clusters 2>/dev/null | grep -qx "$NAME"; then
  say "cluster '$NAME' exists but is not healthy or has other kwok stages: recreating it"
  # Its LWS manager first: it runs from the cluster's directory, which the delete removes.
  bash "$HERE/lws.sh" stop 8>&-
  "$KWOKCTL" delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG" 8>&- 2>&1 | kwok_log || true
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
    --config "$STAGES" \
    --wait 60s \
    --timeout 120s 8>&- 2>&1 | kwok_log
  sha256sum <"$STAGES" >"$STAGES_STAMP"
fi

# ---- ready for workloads --------------------------------------------------------------------------
"$KUBECTL" config use-context "kwok-$NAME" >/dev/null
apiserver_ready() { "$KUBECTL" get --raw /readyz --request-timeout=3s >/dev/null 2>&1; }
wait_until "kube-apiserver not ready" 120 apiserver_ready
# Pods are admitted only once the controller-manager has created the namespace's service account.
default_sa() { "$KUBECTL" -n default get serviceaccount default >/dev/null 2>&1; }
wait_until "no default service account (kube-controller-manager down?)" 120 default_sa

say "applying the fake GPU nodes"
"$KUBECTL" apply -f "$HERE/nodes.yaml" >/dev/null
"$KUBECTL" wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null
wait_until "kwok holds no fresh lease for every node (kwok-controller down?)" 120 nodes_alive
"$KUBECTL" get nodes -L nvidia.com/gpu.product -L nvidia.com/gpu.count >&2

# ---- the LeaderWorkerSet controller: CRD, webhooks, manager; returns once its webhook answers ------
say "starting the LeaderWorkerSet controller (lws.sh)"
if ! bash "$HERE/lws.sh" start 8>&-; then
  say "the LeaderWorkerSet controller did not start (log above)"
  exit 1
fi

say "cluster '$NAME' is up (kubeconfig below; or: source e2e/cluster/env.sh)"
echo "$KUBECONFIG"

#!/usr/bin/env bash
# The LeaderWorkerSet controller of the local e2e cluster: the real lws-manager (sigs.k8s.io/lws, built
# by build.sh at its pinned version) as a host process next to the kwokctl control plane, with its
# CRD and its four admission webhooks, so a LeaderWorkerSet applied in an e2e test gets real group
# pods (leader + workers, through the StatefulSet controller) on the kwok GPU nodes.
#
#   bash e2e/cluster/lws.sh start    # up.sh: apply the CRD and webhooks, (re)start the manager unless
#                                    # it runs and its webhook answers; returns once it answers
#   bash e2e/cluster/lws.sh stop     # down.sh (and up.sh before recreating a cluster): stop the manager
#   bash e2e/cluster/lws.sh status   # exit 0 when the manager runs and its webhook answers
#
# No cert-manager and no in-cluster Service: there are no real pods to run the manager in. So LWS's
# own certificate management is off (internalCertManagement.enable: false, which only suits a Service
# inside the cluster), the webhook server listens on 127.0.0.1, its serving certificate comes from a
# CA made here with openssl, and the webhook configurations name it by URL with that CA's caBundle.
# The manager uses the cluster's own admin kubeconfig (kwokctl's kubeconfig.yaml, not the shared one
# whose current context up.sh switches), so RBAC does not get in its way.
#
# State (under the cluster's kwokctl directory, so it goes with the cluster):
#   $KWOK_WORKDIR/clusters/$TOKENSCALE_CLUSTER_NAME/lws/{config.yaml,certs/,lws-manager.pid,lws-manager.log}
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T0=$SECONDS
say() { printf '[lws %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# shellcheck source=env.sh
source "$HERE/env.sh"
NAME="$TOKENSCALE_CLUSTER_NAME"
MANAGER="$(bash "$HERE/build.sh" --print | sed -n 's/^lws-manager=//p')"
CRD="$(dirname "$MANAGER")/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
CLUSTER_DIR="$KWOK_WORKDIR/clusters/$NAME"
CLUSTER_KUBECONFIG="$CLUSTER_DIR/kubeconfig.yaml"
STATE="$CLUSTER_DIR/lws"
CONFIG="$STATE/config.yaml"
CERTS="$STATE/certs"
PIDFILE="$STATE/lws-manager.pid"
LOG="$STATE/lws-manager.log"

kc() { "$KUBECTL" --kubeconfig "$CLUSTER_KUBECONFIG" "$@"; }

# manager_pids: the lws-manager processes serving this cluster: our binary run with the exact
# `--config=` argument, a path unique to this cluster. Found in /proc rather than trusted from the pid
# file: that also finds one whose pid file is gone, and never matches another cluster's manager or a
# recycled pid.
manager_pids() {
  local f args
  for f in /proc/[0-9]*/cmdline; do
    mapfile -d '' -t args 2>/dev/null <"$f" || continue
    [[ "${args[0]:-}" == "$MANAGER" ]] || continue
    [[ " ${args[*]:1} " == *" --config=$CONFIG "* ]] || continue
    f="${f#/proc/}"
    echo "${f%/cmdline}"
  done
}

# webhook_answers: a server-side dry run of a LeaderWorkerSet goes through the API server to both
# LWS webhooks (mutating, then validating) and comes back defaulted: only the mutating webhook fills
# in rollingUpdateConfiguration (the CRD does not), so a partition in the answer proves the whole
# path: URL, port, serving certificate and caBundle.
webhook_answers() {
  local out
  out="$(kc create --dry-run=server -o jsonpath='{.spec.rolloutStrategy.rollingUpdateConfiguration.partition}' \
    --request-timeout=5s -f - 2>/dev/null <<'EOF'
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata:
  name: tokenscale-lws-webhook-probe
  namespace: default
spec:
  leaderWorkerTemplate:
    workerTemplate:
      spec:
        containers:
        - name: probe
          image: probe
EOF
)" || return 1
  [[ -n "$out" ]]
}

running() { [[ -n "$(manager_pids)" ]]; }

# gc_probe_*: kube-controller-manager's garbage collector deletes the dependents of a deleted
# LeaderWorkerSet (its StatefulSets and Service, and so their pods) only once it knows the kind, and
# it rereads discovery every 30 s (a constant in kube-controller-manager): on a fresh cluster an LWS
# deleted within that half minute after its CRD came leaves its pods running until then (seen). The
# probe: a ConfigMap owned by a LeaderWorkerSet that does not exist, which the collector deletes as
# soon as it can resolve the owner's kind. Made anew every 5 s: the collector retries an owner it
# could not resolve with a growing backoff, so an old probe can outlast the resync by many seconds.
GC_PROBE=tokenscale-lws-gc-probe
gc_probe_create() {
  kc -n default delete configmap "$GC_PROBE" --ignore-not-found --wait=false >/dev/null
  kc create -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: $GC_PROBE
  namespace: default
  ownerReferences:
  - apiVersion: leaderworkerset.x-k8s.io/v1
    kind: LeaderWorkerSet
    name: $GC_PROBE-owner
    uid: $(cat /proc/sys/kernel/random/uuid)
EOF
}
gc_probe_gone() {
  [[ -z "$(kc -n default get configmap "$GC_PROBE" --ignore-not-found -o name --request-timeout=5s 2>/dev/null)" ]]
}

show_log() {
  if [[ -s "$LOG" ]]; then
    say "last lines of $LOG:"
    tail -n 40 "$LOG" | sed 's/^/  | /' >&2
  else
    say "no manager log at $LOG"
  fi
}

stop() {
  local pids pid start
  pids="$(manager_pids)"
  if [[ -z "$pids" ]]; then
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping lws-manager (pid $(echo $pids))"
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  start=$SECONDS
  while running && (( SECONDS - start < 15 )); do sleep 0.2; done
  for pid in $(manager_pids); do
    say "lws-manager pid $pid ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
  start=$SECONDS
  while running && (( SECONDS - start < 5 )); do sleep 0.2; done
  if running; then
    say "lws-manager still running (pid $(echo $(manager_pids))) after SIGKILL"
    return 1
  fi
  rm -f "$PIDFILE"
}

# make_certs: a CA and a serving certificate for 127.0.0.1/localhost, once per cluster (they live in
# its state directory). ECDSA P-256: quick to make, and Go's TLS (the API server's webhook client and
# the manager's server) takes it.
make_certs() {
  [[ -s "$CERTS/ca.crt" && -s "$CERTS/tls.crt" && -s "$CERTS/tls.key" ]] && return 0
  command -v openssl >/dev/null || { say "openssl not found (apt-get install openssl)"; return 1; }
  local tmp="$CERTS.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 3650 \
    -subj "/CN=tokenscale-lws-webhook-ca" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=127.0.0.1" -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 3650 -extfile "$tmp/ext.cnf" -out "$tmp/tls.crt" 2>/dev/null
  rm -f "$tmp/tls.csr" "$tmp/ext.cnf"
  rm -rf "$CERTS" && mv "$tmp" "$CERTS"
}

# free_ports N: N distinct TCP ports free on 127.0.0.1 now (held together while picked).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}

# webhooks PORT: LWS v0.7.0's webhook configurations as its release manifest has them (kustomize
# build of config/webhook: manifests.yaml with mutating-patch.yaml and validating-patch.yaml applied,
# and config/default's "lws-" name prefix). The patches give mpod.kb.io CREATE and UPDATE and an
# objectSelector on both pod webhooks, so pods that are not LWS pods never reach the manager. Only
# clientConfig differs: a URL on this host with our CA instead of the in-cluster Service.
webhooks() {
  local port=$1 ca
  ca="$(base64 -w0 <"$CERTS/ca.crt")"
  local url="https://127.0.0.1:$port"
  cat <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: lws-mutating-webhook-configuration
  labels: {app.kubernetes.io/managed-by: tokenscale-e2e-cluster}
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    url: $url/mutate-leaderworkerset-x-k8s-io-v1-leaderworkerset
    caBundle: $ca
  failurePolicy: Fail
  name: mleaderworkerset.kb.io
  rules:
  - apiGroups: [leaderworkerset.x-k8s.io]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [leaderworkersets]
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    url: $url/mutate--v1-pod
    caBundle: $ca
  failurePolicy: Fail
  name: mpod.kb.io
  objectSelector:
    matchExpressions:
    - key: leaderworkerset.sigs.k8s.io/name
      operator: Exists
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [pods]
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: lws-validating-webhook-configuration
  labels: {app.kubernetes.io/managed-by: tokenscale-e2e-cluster}
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    url: $url/validate-leaderworkerset-x-k8s-io-v1-leaderworkerset
    caBundle: $ca
  failurePolicy: Fail
  name: vleaderworkerset.kb.io
  rules:
  - apiGroups: [leaderworkerset.x-k8s.io]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [leaderworkersets]
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    url: $url/validate--v1-pod
    caBundle: $ca
  failurePolicy: Fail
  name: vpod.kb.io
  objectSelector:
    matchExpressions:
    - key: leaderworkerset.sigs.k8s.io/name
      operator: Exists
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [pods]
  sideEffects: None
EOF
}

start() {
  if [[ ! -x "$MANAGER" || ! -f "$CRD" ]]; then
    say "lws-manager is not built ($MANAGER): run 'make setup' (or 'bash e2e/cluster/build.sh') first"
    return 1
  fi
  if [[ ! -s "$CLUSTER_KUBECONFIG" ]]; then
    say "no cluster '$NAME' ($CLUSTER_KUBECONFIG missing): start it with up.sh"
    return 1
  fi
  # The CRD first: the webhook probe needs the type. Server-side apply: the CRD is too big for the
  # last-applied annotation of a client-side apply.
  kc apply --server-side --force-conflicts -f "$CRD" >/dev/null
  # Polled, not `kubectl wait`: that fails at once while the new CRD has no conditions yet.
  crd_established() {
    [[ "$(kc get crd leaderworkersets.leaderworkerset.x-k8s.io --request-timeout=5s \
      -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]]
  }
  wait_until "the LeaderWorkerSet CRD is not Established" 60 crd_established

  if running && webhook_answers; then
    say "lws-manager is running (pid $(echo $(manager_pids)), log $LOG)"
    return 0
  fi
  # Not running (a new cluster, a killed process) or running but not answering (its webhook
  # configurations were changed or lost): start afresh on new ports.
  stop
  mkdir -p "$STATE"
  make_certs
  local ports webhook_port probe_port
  ports="$(free_ports 2)"
  read -r webhook_port probe_port <<<"$ports"
  cat >"$CONFIG" <<EOF
apiVersion: config.lws.x-k8s.io/v1alpha1
kind: Configuration
# Local run: our own certificate (LWS's rotator only serves an in-cluster Service), no metrics server
# (it would need a port and the API server's authn/z for nothing), no leader election (one manager).
internalCertManagement:
  enable: false
webhook:
  host: 127.0.0.1
  port: $webhook_port
  certDir: $CERTS
metrics:
  bindAddress: "0"
health:
  healthProbeBindAddress: 127.0.0.1:$probe_port
leaderElection:
  leaderElect: false
EOF
  webhooks "$webhook_port" | kc apply -f - >/dev/null
  # Now, so the collector's wait overlaps the manager's start.
  gc_probe_create

  say "starting lws-manager (webhook https://127.0.0.1:$webhook_port, log $LOG)"
  # In a session of its own, so a Ctrl-C on the terminal that ran up.sh does not reach it, and with
  # every inherited descriptor above stderr closed: it then holds no lock (up.sh's descriptor 8,
  # build.sh's 9) and no pipe a caller waits on (`$(bash up.sh)`, a test harness capturing output
  # would otherwise wait for it forever). It outlives this script, as the kwokctl components do;
  # down.sh stops it.
  printf '\n==== %s: lws-manager %s starting\n' "$(date -u +%FT%TZ)" "$MANAGER" >>"$LOG"
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      (( fd > 2 )) && eval "exec $fd>&-"
    done
    KUBECONFIG="$CLUSTER_KUBECONFIG" exec setsid "$MANAGER" --config="$CONFIG" --leader-elect=false
  ) </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"

  # Until the webhook answers; at once when the manager has exited (a bad config, a port taken since).
  local t=$SECONDS
  until webhook_answers; do
    if ! running; then
      say "lws-manager exited"
      show_log
      return 1
    fi
    if (( SECONDS - t >= 60 )); then
      say "the LWS webhook does not answer after 60 s"
      show_log
      stop
      return 1
    fi
    sleep 0.5
  done
  say "lws-manager is up and its webhook answers (pid $(cat "$PIDFILE"))"
  # Then the garbage collector (see gc_probe_create), made to know LeaderWorkerSets in the meantime.
  t=$SECONDS
  local made=$SECONDS waited=""
  until gc_probe_gone; do
    if [[ -z "$waited" ]]; then
      say "waiting for the garbage collector to know LeaderWorkerSets (it rereads discovery every 30 s)"
      waited=1
    fi
    if (( SECONDS - t >= 60 )); then
      say "the garbage collector does not delete LeaderWorkerSet dependents after 60 s (kube-controller-manager down?)"
      return 1
    fi
    if (( SECONDS - made >= 5 )); then
      gc_probe_create
      made=$SECONDS
    fi
    sleep 0.5
  done
  [[ -z "$waited" ]] || say "the garbage collector knows LeaderWorkerSets"
}

status() {
  local pids
  pids="$(manager_pids)"
  if [[ -z "$pids" ]]; then echo "lws-manager: not running" >&2; return 1; fi
  if ! webhook_answers; then echo "lws-manager: running (pid $(echo $pids)), webhook does not answer" >&2; return 1; fi
  echo "lws-manager: running (pid $(echo $pids)), webhook answers; log $LOG" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

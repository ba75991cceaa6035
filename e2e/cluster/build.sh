#!/usr/bin/env bash
# Build and cache every binary the local e2e cluster needs, at pinned versions, from the Go module
# proxy (and Prometheus from Debian). A binary already in the cache for its pinned version is reused.
# That includes the LeaderWorkerSet (LWS) controller, lws-manager, which up.sh runs next to the
# control plane (lws.sh); its CRD is copied next to it so a cluster start never needs the module cache.
#
#   bash e2e/cluster/build.sh            # build what is missing (make setup runs it)
#   bash e2e/cluster/build.sh --print    # print the cached paths (no build)
#   bash e2e/cluster/build.sh --check    # exit 1, naming what is missing, when a binary is not built
#
# Cache layout: ${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale/bin/<component>-<version>/<component>
# (and bin/lws-manager-<version>/leaderworkerset.x-k8s.io_leaderworkersets.yaml, the LWS CRD, written
# before the binary: a present binary means a complete component).
# Interrupting a build (Ctrl-C, SIGTERM, a killed parent) stops its go builds with it, and the
# lock is held on a file descriptor no child inherits, so it is released when this script ends.
set -euo pipefail

# ---- pinned versions ------------------------------------------------------------------------------
KUBE_VERSION="${TOKENSCALE_KUBE_VERSION:-v1.37.2}"   # k8s.io/kubernetes (apiserver, controller-manager, scheduler, kubectl)
ETCD_VERSION="${TOKENSCALE_ETCD_VERSION:-v3.6.16}"   # go.etcd.io/etcd/server/v3
KWOK_VERSION="${TOKENSCALE_KWOK_VERSION:-v0.8.0}"    # sigs.k8s.io/kwok (kwok, kwokctl)
HELM_VERSION="${TOKENSCALE_HELM_VERSION:-v3.22.0}"   # helm.sh/helm/v3
LWS_VERSION="${TOKENSCALE_LWS_VERSION:-v0.7.0}"      # sigs.k8s.io/lws (lws-manager + its CRD)
PROMETHEUS_DEB="${TOKENSCALE_PROMETHEUS_DEB:-debian}" # Debian's prometheus package, unpacked into the cache
# ---------------------------------------------------------------------------------------------------

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tokenscale"
BIN_ROOT="$CACHE_DIR/bin"
SRC_ROOT="$CACHE_DIR/src"
KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# Path of a cached binary: bin_path COMPONENT VERSION
bin_path() { echo "$BIN_ROOT/$1-$2/$1"; }

if [[ "${1:-}" == "--print" ]]; then
  for c in "${KUBE_COMPONENTS[@]}"; do echo "$c=$(bin_path "$c" "$KUBE_VERSION")"; done
  echo "etcd=$(bin_path etcd "$ETCD_VERSION")"
  echo "kwok=$(bin_path kwok "$KWOK_VERSION")"
  echo "kwokctl=$(bin_path kwokctl "$KWOK_VERSION")"
  echo "helm=$(bin_path helm "$HELM_VERSION")"
  echo "prometheus=$(bin_path prometheus "$PROMETHEUS_DEB")"
  echo "lws-manager=$(bin_path lws-manager "$LWS_VERSION")"
  exit 0
fi

if [[ "${1:-}" == "--check" ]]; then
  missing=()
  while IFS='=' read -r name path; do
    [[ -x "$path" ]] || missing+=("$name")
  done < <(bash "${BASH_SOURCE[0]}" --print)
  if (( ${#missing[@]} )); then
    echo "not built: ${missing[*]} (run: make setup)" >&2
    exit 1
  fi
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for d in /usr/local/go/bin "$HOME/go/bin" /usr/lib/go/bin; do
    [[ -x "$d/go" ]] && export PATH="$d:$PATH" && break
  done
fi
command -v go >/dev/null 2>&1 || { echo "build.sh: Go toolchain not found (need go >= 1.26 on PATH)" >&2; exit 1; }

export GOFLAGS="-mod=mod -buildvcs=false -modcacherw"
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

mkdir -p "$BIN_ROOT" "$SRC_ROOT"
exec 9>"$CACHE_DIR/build.lock"
if ! flock -n 9; then
  echo "build.sh: another build holds $CACHE_DIR/build.lock; waiting for it"
  flock 9
fi
# Every go command runs through run_progress: in the background, in a process group of its own,
# with descriptor 9 closed. So only this process holds the lock (it is released the moment this
# process ends, however it ends: a SIGKILL included), this process stays interruptible while a
# build runs (bash defers traps until a foreground command ends), and an interrupt stops the
# whole go process tree in flight: no orphan keeps building.
stop_children() {
  local pid
  for pid in $(jobs -p); do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
}
trap 'stop_children; exit 130' INT
trap 'stop_children; exit 143' TERM HUP

START_ALL=$SECONDS
log() { printf '[build %4ds] %s\n' "$((SECONDS - START_ALL))" "$*" >&2; }

# run_progress LABEL CMD...: run CMD, printing elapsed seconds every 30 s until it finishes.
run_progress() {
  local label=$1; shift
  local t0=$SECONDS
  setsid "$@" 9>&- &
  local pid=$!
  local next=$((t0 + 30))
  while kill -0 "$pid" 2>/dev/null; do
    # `wait` on a background sleep, not a foreground one: a trapped signal interrupts the wait
    # builtin at once, while for a foreground child bash applies SIGINT's wait-and-see rule and
    # may drop the signal when the child exits normally (seen once on a loaded machine).
    sleep 1 9>&- &
    wait $! 2>/dev/null || true
    if (( SECONDS >= next )) && kill -0 "$pid" 2>/dev/null; then
      log "$label: still building, $((SECONDS - t0)) s elapsed"
      next=$((next + 30))
    fi
  done
  local rc=0
  wait "$pid" || rc=$?
  if (( rc != 0 )); then
    log "$label: FAILED after $((SECONDS - t0)) s (exit $rc)"
    return "$rc"
  fi
  log "$label: done in $((SECONDS - t0)) s"
}

# new_module DIR NAME: an empty wrapper module to resolve and build pinned releases.
new_module() {
  rm -rf "$1" && mkdir -p "$1"
  printf 'module tokenscale.local/build/%s\n\ngo 1.26\n' "$2" >"$1/go.mod"
}

# ---- Prometheus (Debian package, unpacked into the cache) ---------------------------------------
# Not installed system-wide: the package is downloaded and unpacked under the cache, so a fresh
# cache really is a machine without Prometheus, and nothing outside the cache is changed.
build_prometheus() {
  local out
  out="$(dirname "$(bin_path prometheus "$PROMETHEUS_DEB")")"
  if [[ -x "$out/prometheus" ]]; then log "prometheus ($(cat "$out/VERSION" 2>/dev/null)): cached"; return; fi
  local t0=$SECONDS tmp
  tmp="$(mktemp -d)"
  if ! apt-cache show prometheus >/dev/null 2>&1; then
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    log "prometheus: apt-get update (the package lists are empty)"
    $sudo apt-get update -qq 9>&-
  fi
  log "prometheus: downloading the Debian package"
  (cd "$tmp" && apt-get download -qq prometheus 9>&-)
  local deb
  deb="$(ls "$tmp"/prometheus_*.deb)"
  dpkg-deb -x "$deb" "$tmp/root"
  mkdir -p "$out"
  mv "$tmp/root/usr/bin/prometheus" "$out/prometheus"
  basename "$deb" .deb >"$out/VERSION"
  rm -rf "$tmp"
  "$out/prometheus" --version >/dev/null 2>&1 || { log "prometheus: the unpacked binary does not run"; return 1; }
  log "prometheus ($(cat "$out/VERSION")): unpacked in $((SECONDS - t0)) s"
}

# ---- kwok + kwokctl -------------------------------------------------------------------------------
build_kwok() {
  local out="$BIN_ROOT/kwok-$KWOK_VERSION" outctl="$BIN_ROOT/kwokctl-$KWOK_VERSION"
  if [[ -x "$out/kwok" && -x "$outctl/kwokctl" ]]; then log "kwok, kwokctl $KWOK_VERSION: cached"; return; fi
  log "kwok, kwokctl $KWOK_VERSION: building"
  local mod="$SRC_ROOT/kwok-$KWOK_VERSION" tmp
  new_module "$mod" kwok
  tmp="$mod/out"
  mkdir -p "$tmp"
  run_progress "kwok: go get" go -C "$mod" get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBE_VERSION"
  run_progress "kwok, kwokctl" go -C "$mod" build -trimpath -ldflags "$ld" -o "$tmp/" \
    sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
  mkdir -p "$out" "$outctl"
  mv "$tmp/kwok" "$out/kwok"
  mv "$tmp/kwokctl" "$outctl/kwokctl"
}

# ---- etcd -----------------------------------------------------------------------------------------
build_etcd() {
  local out="$BIN_ROOT/etcd-$ETCD_VERSION"
  if [[ -x "$out/etcd" ]]; then log "etcd $ETCD_VERSION: cached"; return; fi
  log "etcd $ETCD_VERSION: building"
  local mod="$SRC_ROOT/etcd-$ETCD_VERSION"
  new_module "$mod" etcd
  run_progress "etcd: go get" go -C "$mod" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  mkdir -p "$mod/out"
  run_progress etcd go -C "$mod" build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
    -o "$mod/out/etcd" go.etcd.io/etcd/server/v3
  mkdir -p "$out"
  mv "$mod/out/etcd" "$out/etcd"
}

# ---- Helm 3 ---------------------------------------------------------------------------------------
build_helm() {
  local out="$BIN_ROOT/helm-$HELM_VERSION"
  if [[ -x "$out/helm" ]]; then log "helm $HELM_VERSION: cached"; return; fi
  log "helm $HELM_VERSION: building"
  local mod="$SRC_ROOT/helm-$HELM_VERSION"
  new_module "$mod" helm
  run_progress "helm: go get" go -C "$mod" get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mkdir -p "$mod/out"
  run_progress helm go -C "$mod" build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    -o "$mod/out/helm" helm.sh/helm/v3/cmd/helm
  mkdir -p "$out"
  mv "$mod/out/helm" "$out/helm"
}

# ---- Kubernetes control plane + kubectl ----------------------------------------------------------
build_kube() {
  local missing=() c
  for c in "${KUBE_COMPONENTS[@]}"; do
    [[ -x "$(bin_path "$c" "$KUBE_VERSION")" ]] || missing+=("$c")
  done
  if (( ${#missing[@]} == 0 )); then log "kubernetes $KUBE_VERSION: cached"; return; fi
  log "kubernetes $KUBE_VERSION: building ${missing[*]}"
  local mod="$SRC_ROOT/kubernetes-$KUBE_VERSION"
  new_module "$mod" kubernetes
  local staging_version="v0.${KUBE_VERSION#v1.}"   # v1.37.2 -> v0.37.2
  local gomod
  run_progress "kubernetes: go mod download" go -C "$mod" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >"$mod/download.json"
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$mod/download.json")
  # k8s.io/kubernetes requires its staging modules at v0.0.0 (replaced by ./staging in its own repo):
  # point each one at the matching published release.
  local staging
  staging=$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)
  local edits=(-require="k8s.io/kubernetes@$KUBE_VERSION")
  for m in $staging; do edits+=(-replace="$m=$m@$staging_version"); done
  run_progress "kubernetes: go mod edit" go -C "$mod" mod edit "${edits[@]}"
  log "kubernetes: $(wc -w <<<"$staging") staging modules replaced with $staging_version"
  local pkgs=()
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  local getpkgs=()
  for p in "${pkgs[@]}"; do getpkgs+=("$p@$KUBE_VERSION"); done
  run_progress "kubernetes: go get" go -C "$mod" get "${getpkgs[@]}"
  local ver=${KUBE_VERSION#v} commit
  commit=$(sed -n 's/.*"Hash": "\([0-9a-f]*\)".*/\1/p' "$mod/download.json" | head -1)
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=${ver%%.*} -X $pkg.gitMinor=$(cut -d. -f2 <<<"$ver")"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    [[ -n "$commit" ]] && ld+=" -X $pkg.gitCommit=$commit"
  done
  mkdir -p "$mod/out"
  run_progress "kubernetes (${missing[*]})" go -C "$mod" build -trimpath -tags selinux,notest -ldflags "$ld" \
    -o "$mod/out/" "${pkgs[@]}"
  for c in "${missing[@]}"; do
    mkdir -p "$BIN_ROOT/$c-$KUBE_VERSION"
    mv "$mod/out/$c" "$(bin_path "$c" "$KUBE_VERSION")"
  done
}

# ---- LeaderWorkerSet controller (lws-manager) + its CRD ------------------------------------------
# The real controller with its webhooks, run as a host process by lws.sh: multi-node model groups are
# LeaderWorkerSets, and only the real controller (with its pod webhook) makes their group pods.
LWS_CRD=leaderworkerset.x-k8s.io_leaderworkersets.yaml
build_lws() {
  local out="$BIN_ROOT/lws-manager-$LWS_VERSION"
  if [[ -x "$out/lws-manager" && -f "$out/$LWS_CRD" ]]; then log "lws-manager $LWS_VERSION: cached"; return; fi
  log "lws-manager $LWS_VERSION: building"
  local mod="$SRC_ROOT/lws-$LWS_VERSION" dir
  new_module "$mod" lws
  run_progress "lws: go get" go -C "$mod" get "sigs.k8s.io/lws/cmd@$LWS_VERSION"
  mkdir -p "$mod/out"
  run_progress lws-manager go -C "$mod" build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/lws/pkg/version.GitVersion=$LWS_VERSION" \
    -o "$mod/out/lws-manager" sigs.k8s.io/lws/cmd
  # The CRD of the very release built (config/crd/bases, as LWS's `make install` applies it): from the
  # module cache now, so up.sh does not depend on the module cache later.
  dir="$(go -C "$mod" list -m -f '{{.Dir}}' sigs.k8s.io/lws 9>&-)"
  [[ -f "$dir/config/crd/bases/$LWS_CRD" ]] || { log "lws: no CRD at $dir/config/crd/bases/$LWS_CRD"; return 1; }
  mkdir -p "$out"
  cp "$dir/config/crd/bases/$LWS_CRD" "$out/$LWS_CRD.tmp" && chmod 644 "$out/$LWS_CRD.tmp"
  mv "$out/$LWS_CRD.tmp" "$out/$LWS_CRD"
  mv "$mod/out/lws-manager" "$out/lws-manager"
}

build_prometheus
build_kwok
build_etcd
build_helm
build_kube
build_lws
log "all binaries ready under $BIN_ROOT (total $((SECONDS - START_ALL)) s)"

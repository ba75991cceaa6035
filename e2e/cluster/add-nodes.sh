#!/usr/bin/env bash
# Add fake GPU nodes (kwok) to the running local cluster.
#
#   bash e2e/cluster/add-nodes.sh POOL COUNT GPUS [--dry-run]
#
# POOL: a GPU kind from the catalog, short or long: h100 | h100-80gb, h200 | h200-141gb,
#       a100 | a100-80gb, a100-40gb, l40s | l40s-48gb, l4 | l4-24gb
# COUNT: how many nodes to add; names continue after the pool's highest existing index
#        (gpu-h100-0, gpu-h100-1 exist -> gpu-h100-2, ...).
# GPUS: nvidia.com/gpu capacity of each new node.
# --dry-run prints the manifests instead of applying them.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 ]] || usage
POOL_ARG=$1 COUNT=$2 GPUS=$3 DRY_RUN=${4:-}
[[ "$COUNT" =~ ^[0-9]+$ && "$GPUS" =~ ^[0-9]+$ ]] || { echo "add-nodes.sh: COUNT and GPUS must be whole numbers" >&2; usage; }

# The labels GPU Feature Discovery writes on such a node: the product is NVML's name with '-' for
# spaces, memory is NVML's total in MiB (what nvidia-smi prints), family and compute capability
# from the architecture, machine from the host's DMI product name (here a cloud instance type).
# tokenscale.io/pool is the harness's own bookkeeping (which fake nodes it added), no GFD label.
case "$POOL_ARG" in
  h100 | h100-80gb) POOL=h100 KIND=h100-80gb PRODUCT=NVIDIA-H100-80GB-HBM3 MEMORY=81559 FAMILY=hopper MAJOR=9 MINOR=0 MIG=true MACHINE=p5.48xlarge ;;
  h200 | h200-141gb) POOL=h200 KIND=h200-141gb PRODUCT=NVIDIA-H200 MEMORY=143771 FAMILY=hopper MAJOR=9 MINOR=0 MIG=true MACHINE=p5e.48xlarge ;;
  a100 | a100-80gb) POOL=a100 KIND=a100-80gb PRODUCT=NVIDIA-A100-SXM4-80GB MEMORY=81920 FAMILY=ampere MAJOR=8 MINOR=0 MIG=true MACHINE=p4de.24xlarge ;;
  a100-40gb) POOL=a100-40gb KIND=a100-40gb PRODUCT=NVIDIA-A100-SXM4-40GB MEMORY=40960 FAMILY=ampere MAJOR=8 MINOR=0 MIG=true MACHINE=p4d.24xlarge ;;
  l40s | l40s-48gb) POOL=l40s KIND=l40s-48gb PRODUCT=NVIDIA-L40S MEMORY=46068 FAMILY=ada-lovelace MAJOR=8 MINOR=9 MIG=false MACHINE=g6e.24xlarge ;;
  l4 | l4-24gb) POOL=l4 KIND=l4-24gb PRODUCT=NVIDIA-L4 MEMORY=23034 FAMILY=ada-lovelace MAJOR=8 MINOR=9 MIG=false MACHINE=g6.24xlarge ;;
  *) echo "add-nodes.sh: unknown pool '$POOL_ARG'" >&2; usage ;;
esac

# shellcheck source=env.sh
source "$HERE/env.sh"

start=0
if [[ "$DRY_RUN" != "--dry-run" ]]; then
  # Next free index in this pool.
  last=$("$KUBECTL" get nodes -l "tokenscale.io/pool=$POOL" -o name 2>/dev/null |
    sed -n "s|^node/gpu-$POOL-\([0-9]*\)$|\1|p" | sort -n | tail -1)
  [[ -n "$last" ]] && start=$((last + 1))
fi

manifest() {
  local i name
  for ((i = start; i < start + COUNT; i++)); do
    name="gpu-$POOL-$i"
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    beta.kubernetes.io/arch: amd64
    tokenscale.io/pool: $POOL
    nvidia.com/gpu.product: $PRODUCT
    nvidia.com/gpu.count: "$GPUS"
    nvidia.com/gpu.memory: "$MEMORY"
    nvidia.com/gpu.family: $FAMILY
    nvidia.com/gpu.machine: $MACHINE
    nvidia.com/gpu.compute.major: "$MAJOR"
    nvidia.com/gpu.compute.minor: "$MINOR"
    nvidia.com/gpu.replicas: "1"
    nvidia.com/gpu.sharing-strategy: none
    nvidia.com/mig.capable: "$MIG"
    nvidia.com/mps.capable: "false"
    nvidia.com/cuda.driver.major: "550"
    nvidia.com/cuda.driver.minor: "90"
    nvidia.com/cuda.driver.rev: "07"
    nvidia.com/cuda.runtime.major: "12"
    nvidia.com/cuda.runtime.minor: "4"
spec: {}
status:
  capacity: {cpu: "64", memory: 512Gi, ephemeral-storage: 1Ti, pods: "250", nvidia.com/gpu: "$GPUS"}
  allocatable: {cpu: "64", memory: 512Gi, ephemeral-storage: 1Ti, pods: "250", nvidia.com/gpu: "$GPUS"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
  phase: Running
EOF
  done
}

if [[ "$DRY_RUN" == "--dry-run" ]]; then
  manifest
  exit 0
fi
(( COUNT > 0 )) || exit 0
manifest | "$KUBECTL" create -f - >/dev/null
names=()
for ((i = start; i < start + COUNT; i++)); do names+=("node/gpu-$POOL-$i"); done
"$KUBECTL" wait --for=condition=Ready "${names[@]}" --timeout=120s >/dev/null
echo "add-nodes.sh: added ${#names[@]} $KIND nodes x $GPUS nvidia.com/gpu (gpu-$POOL-$start .. gpu-$POOL-$((start + COUNT - 1)))" >&2

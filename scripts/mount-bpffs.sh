#!/usr/bin/env bash
# Mounts the BPF filesystem at /sys/fs/bpf when nothing is mounted there. A fresh
# machine has none (systemd mounts it on most distributions, minimal hosts and VMs
# do not), and the agent, the lab and the tests pin their maps there. Mode 0700, as
# systemd mounts it. scripts/setup.sh runs this; so does the fresh-machine test.
set -euo pipefail
BPFFS=/sys/fs/bpf
if [[ $(stat -f -c %T "$BPFFS" 2>/dev/null) != bpf_fs ]]; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO mount -t bpf -o mode=0700 bpf "$BPFFS"
  echo "setup: mounted the BPF filesystem at $BPFFS (it was not mounted)" >&2
fi

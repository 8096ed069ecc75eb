#!/usr/bin/env bash
# The README's lab command: install what is missing, build, then run the lab (network
# namespaces it creates and always removes): a real control plane on loopback (etcd,
# kube-apiserver, kube-controller-manager, built from their Go modules into .tools/ by
# scripts/build-control-plane.sh, which setup.sh runs), the operator and the agents, with
# examples/ applied. kubectl for talking to it while it runs is unpacked to .tools/bin/
# (scripts/kube-tools.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
bash scripts/kube-tools.sh >/dev/null
exec node src/cli.ts lab "$@"

#!/usr/bin/env bash
# The README's lab command: install what is missing, build, then run the lab on its
# embedded default (network namespaces it creates and always removes): the in-process
# API server, the operator and the agents, with examples/ applied. kubectl for talking
# to it while it runs is unpacked to .tools/bin/ (scripts/kube-tools.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
bash scripts/kube-tools.sh >/dev/null
exec node src/cli.ts lab "$@"

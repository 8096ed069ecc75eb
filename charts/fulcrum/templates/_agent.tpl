{{- /*
The agent container's security context and mounts, shared by the agent and by the
uninstall init container (agent.uninstall), which needs the same privileges and paths.
The security context takes (dict "ctx" $ "privileged" true|false).
*/}}

{{- define "fulcrum.agent.securityContext" -}}
# Root: the node's /sys/fs/bpf and /run/netns belong to root, and the tools the
# agent runs (nsenter, ip, sh) keep the container's capabilities only as uid 0.
# The image's own user, 65532, is the operator's.
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
readOnlyRootFilesystem: true
{{- if .privileged }}
# agent.privileged: an escape hatch, not needed with the capabilities below.
privileged: true
{{- else }}
privileged: false
allowPrivilegeEscalation: false
seccompProfile:
  type: RuntimeDefault
# Exactly what the agent's system calls need (checked by loading balancer.bpf.o
# and decap.bpf.o and entering a network namespace with each one dropped).
# The kernel also accepts SYS_ADMIN for the BPF and PERFMON checks; those two
# are listed to say what the BPF work needs, not because they add rights.
# Not needed: SYS_RESOURCE (kernels 5.11+ charge BPF memory to the memory
# cgroup instead of RLIMIT_MEMLOCK), NET_RAW, DAC_OVERRIDE (all is root's).
capabilities:
  drop: [ALL]
  add:
    # bpf(): create and pin maps, load the programs, reopen pins after a restart.
    - BPF
    # Attach XDP/tc programs, put VIPs on pods' lo, write their net sysctls (/host/proc/sys).
    - NET_ADMIN
    # Without it the verifier refuses balancer.bpf.o and decap.bpf.o ("prohibited for !root").
    - PERFMON
    # setns() into backend pods' network namespaces (the netns worker thread, nsenter).
    - SYS_ADMIN
    # Open /proc/<pid>/ns/net of other users' processes (the pause process runs as 65535).
    - SYS_PTRACE
{{- end }}
{{- end }}

{{- define "fulcrum.agent.volumeMounts" -}}
- name: config
  mountPath: /etc/fulcrum
  readOnly: true
# The node's BPF filesystem: pins are made there, so they outlive the pod.
# HostToContainer: a bpffs the init container (or the node) mounts later is seen.
- name: bpffs
  mountPath: /sys/fs/bpf
  mountPropagation: HostToContainer
# The host's /proc, writable: the runtime makes the container's own /proc/sys
# read-only, and backend pods' DSR sysctls are written through this one instead.
- name: host-proc
  mountPath: /host/proc
{{- if .Values.agent.podNetns.dir }}
# Named network namespaces; HostToContainer, so namespaces created after the
# agent started (new pods) appear in it.
- name: netns
  mountPath: {{ .Values.agent.podNetns.dir }}
  mountPropagation: HostToContainer
  readOnly: true
{{- end }}
{{- end }}

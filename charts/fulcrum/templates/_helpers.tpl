{{/*
Names, labels and the image, shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "fulcrum.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it already
contains the chart name (release "fulcrum" gives fulcrum-operator, fulcrum-agent, the
names deploy/rbac/ and docs/operator.md use), else "<release>-<chart>". 46 characters
leave room for the longest suffix of a name limited to 63 characters: a Service's
(DNS-1035 label), "-operator-metrics"; the real API server refused a 48-character prefix
there (test/chart/install.test.ts).
*/}}
{{- define "fulcrum.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels every object carries (app.kubernetes.io/*, helm.sh/chart). */}}
{{- define "fulcrum.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fulcrum.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fulcrum
{{- end }}

{{/* The labels selectors use: they never change for a release, so they stay out of upgrades' way. */}}
{{- define "fulcrum.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fulcrum.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: pass (dict "ctx" $ "component" "operator"). */}}
{{- define "fulcrum.componentLabels" -}}
{{ include "fulcrum.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "fulcrum.componentSelectorLabels" -}}
{{ include "fulcrum.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object names of the two components. */}}
{{- define "fulcrum.operator.name" -}}
{{- printf "%s-operator" (include "fulcrum.fullname" .) }}
{{- end }}

{{- define "fulcrum.agent.name" -}}
{{- printf "%s-agent" (include "fulcrum.fullname" .) }}
{{- end }}

{{/*
The Lease the operator elects its leader on. The operator's CLI has no flag for it
(src/operator/operator.ts defaults leaseName to "fulcrum-operator"), so it is fixed here
and in the Role that lets the operator renew it: one release per namespace.
*/}}
{{- define "fulcrum.operator.leaseName" -}}
fulcrum-operator
{{- end }}

{{/* The image both components run: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "fulcrum.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* --pod-netns from agent.podNetns: the strategies in the agent's order (dir first, then proc). */}}
{{- define "fulcrum.agent.podNetns" -}}
{{- $strategies := list }}
{{- if .Values.agent.podNetns.dir }}
{{- $strategies = append $strategies (printf "dir=%s" .Values.agent.podNetns.dir) }}
{{- end }}
{{- if .Values.agent.podNetns.proc }}
{{- $strategies = append $strategies "proc" }}
{{- end }}
{{- if not $strategies }}
{{- fail "agent.podNetns: turn on at least one strategy (dir or proc)" }}
{{- end }}
{{- join "," $strategies }}
{{- end }}

{{/*
The agent's configuration file for one role (Kubernetes mode: the fields of AgentConfig at
the top level, nodeName from NODE_NAME). Pass (dict "ctx" $ "balancer" true|false).
bpfObjectDir is left out: the agent finds the objects at bpf/build of its installation,
where the image puts them.
*/}}
{{- define "fulcrum.agent.config" -}}
{{- $v := .ctx.Values.agent }}
{{- /* guePort on every node: backend-only nodes accept what the balancers send.
     mountBpffs false: a mount made inside the agent's container would be private to it
     and the pins would not outlive the pod; the mount-bpffs init container (agent.mountBpffs)
     mounts it on the node instead, and without it the agent reports BpffsUnavailable. */}}
{{- $config := dict "pinRoot" $v.pinRoot "mountBpffs" false "sysctlRoot" "/host/proc/sys" "guePort" $v.balancer.settings.guePort "metrics" (dict "host" $v.metrics.host "port" $v.metrics.port) }}
{{- if .balancer }}
{{- $s := $v.balancer.settings }}
{{- $nextHop := dict "fib" true }}
{{- if eq $s.nextHop.mode "mac" }}
{{- if not $s.nextHop.mac }}
{{- fail "agent.balancer.settings.nextHop.mac: set the next hop's MAC address for mode mac" }}
{{- end }}
{{- $nextHop = dict "mac" $s.nextHop.mac }}
{{- end }}
{{- $balancer := omit $s "nextHop" "nodeAddress4" "nodeAddress6" }}
{{- $_ := set $balancer "nextHop" $nextHop }}
{{- if $s.nodeAddress4 }}{{ $_ := set $balancer "nodeAddress4" $s.nodeAddress4 }}{{ end }}
{{- if $s.nodeAddress6 }}{{ $_ := set $balancer "nodeAddress6" $s.nodeAddress6 }}{{ end }}
{{- $_ := set $config "balancer" $balancer }}
{{- end }}
{{- toYaml $config }}
{{- end }}

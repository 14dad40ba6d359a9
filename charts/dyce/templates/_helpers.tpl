{{/*
Names, labels, security contexts, scheduling and the checks other templates share. The runtime's
container, volumes and init container (also for sidecars) are in _runtime.tpl.
*/}}

{{- define "dyce.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dyce.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<suffix>" within 63 characters: (dict "root" $ "suffix" "controller") */}}
{{- define "dyce.componentName" -}}
{{- $max := sub 62 (len .suffix) | int }}
{{- printf "%s-%s" (include "dyce.fullname" .root | trunc $max | trimSuffix "-") .suffix }}
{{- end }}

{{- define "dyce.controllerName" -}}
{{- include "dyce.componentName" (dict "root" . "suffix" "controller") }}
{{- end }}

{{- define "dyce.runtimeName" -}}
{{- include "dyce.componentName" (dict "root" . "suffix" "runtime") }}
{{- end }}

{{- define "dyce.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "dyce.labels" -}}
helm.sh/chart: {{ include "dyce.chart" . }}
app.kubernetes.io/name: {{ include "dyce.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dyce
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "runtime") */}}
{{- define "dyce.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dyce.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: (dict "root" $ "component" "runtime") */}}
{{- define "dyce.componentLabels" -}}
{{ include "dyce.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The label every pod with this release's runtime carries (Deployment and sidecars). */}}
{{- define "dyce.runtimePodLabels" -}}
dyce.dev/runtime: {{ include "dyce.fullname" . }}
{{- end }}

{{- define "dyce.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "dyce.adminTokenSecretName" -}}
{{- .Values.adminToken.existingSecret | default (include "dyce.componentName" (dict "root" . "suffix" "admin-token")) }}
{{- end }}

{{- define "dyce.adminTokenSecretKey" -}}
{{- if .Values.adminToken.existingSecret }}{{ .Values.adminToken.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "dyce.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- .Values.controller.serviceAccount.name | default (include "dyce.controllerName" .) }}
{{- else }}
{{- .Values.controller.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "dyce.leaseName" -}}
{{- .Values.controller.leaseName | default (include "dyce.controllerName" .) }}
{{- end }}


{{/* Pod-level security context of pods with the runtime (runtime.podSecurityContext; the
restricted profile by default). */}}
{{- define "dyce.podSecurityContext" -}}
{{- toYaml .Values.runtime.podSecurityContext }}
{{- end }}

{{/* Container-level security context of the runtime's containers (runtime.securityContext;
the restricted profile by default, complete on its own, for sidecars). */}}
{{- define "dyce.containerSecurityContext" -}}
{{- toYaml .Values.runtime.securityContext }}
{{- end }}

{{/* topologySpreadConstraints as a pod spec field, each constraint without a labelSelector given
the component's selector labels: (dict "root" $ "component" "runtime" "constraints" list). */}}
{{- define "dyce.topologySpread" -}}
{{- $selector := include "dyce.selectorLabels" (dict "root" .root "component" .component) | fromYaml }}
{{- $out := list }}
{{- range .constraints }}
{{- if hasKey . "labelSelector" }}
{{- $out = append $out . }}
{{- else }}
{{- $out = append $out (merge (dict "labelSelector" (dict "matchLabels" $selector)) .) }}
{{- end }}
{{- end }}
{{- with $out -}}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Grace period of pods with the runtime: the drain delay, the drain timeout and 5 s for the
process to exit; a value given that cannot hold the drain is refused rather than letting the
kubelet kill requests the runtime was still finishing. */}}
{{- define "dyce.terminationGracePeriodSeconds" -}}
{{- $v := .Values.runtime }}
{{- $drain := addf $v.drain.delaySeconds $v.drain.timeoutSeconds }}
{{- if kindIs "invalid" $v.terminationGracePeriodSeconds }}
{{- add (ceil $drain | int) 5 }}
{{- else if lt (float64 $v.terminationGracePeriodSeconds) (addf $drain 1) }}
{{- fail (printf "runtime.terminationGracePeriodSeconds (%v) must be at least runtime.drain.delaySeconds + runtime.drain.timeoutSeconds + 1 (%v), or null to derive it" $v.terminationGracePeriodSeconds (addf $drain 1)) }}
{{- else }}
{{- $v.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* "true" when monitors and rules (monitoring.coreos.com/v1) may be rendered: the cluster serves
the API, or monitoring.ignoreCapabilities. Empty otherwise. */}}
{{- define "dyce.monitoringApi" -}}
{{- if or .Values.monitoring.ignoreCapabilities (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/* "true" when a monitor of this chart scrapes the runtimes' metrics port. */}}
{{- define "dyce.runtimeScraped" -}}
{{- $m := .Values.monitoring }}
{{- if and (or $m.podMonitor.enabled $m.serviceMonitor.enabled) (include "dyce.monitoringApi" .) }}true{{ end }}
{{- end }}

{{/* NetworkPolicy ingress rules of a pod with the runtime, as items of an ingress list (the
data and gRPC ports are listed by the caller with its own): the admin port for the controller
only; the metrics port for Prometheus when a monitor scrapes it (or
networkPolicy.prometheus.enabled) and for the chart's test pod. */}}
{{- define "dyce.runtimeIngress" -}}
- ports:
    - port: admin
      protocol: TCP
  from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Release.Namespace }}
      podSelector:
        matchLabels:
          {{- include "dyce.selectorLabels" (dict "root" . "component" "controller") | nindent 10 }}
{{- $peers := list }}
{{- with .Values.networkPolicy.prometheus }}
{{- if or .enabled (include "dyce.runtimeScraped" $) }}
{{- if or .namespaceLabels .podLabels }}
{{- $peer := dict "podSelector" dict }}
{{- if .podLabels }}
{{- $_ := set $peer "podSelector" (dict "matchLabels" .podLabels) }}
{{- end }}
{{- if .namespaceLabels }}
{{- $_ := set $peer "namespaceSelector" (dict "matchLabels" .namespaceLabels) }}
{{- end }}
{{- $peers = append $peers $peer }}
{{- else }}
{{- /* kube-prometheus-stack's Prometheus pods, wherever the stack is installed. */}}
{{- $peers = append $peers (dict "namespaceSelector" dict "podSelector" (dict "matchLabels" (dict "app.kubernetes.io/name" "prometheus"))) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.tests.enabled .Values.runtime.enabled }}
{{- $peers = append $peers (dict "podSelector" (dict "matchLabels" (include "dyce.selectorLabels" (dict "root" . "component" "test") | fromYaml))) }}
{{- end }}
{{- with $peers }}
- ports:
    - port: metrics
      protocol: TCP
  from:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/* The SloPolicy whose desired replicas the autoscaler follows: autoscaling.policy, else the
chart's SloPolicy. */}}
{{- define "dyce.autoscalingPolicy" -}}
{{- .Values.autoscaling.policy | default .Values.sloPolicy.name | default (include "dyce.fullname" .) }}
{{- end }}

{{/* The earlier name of "dyce.runtimeIngress", kept for templates that include it. */}}
{{- define "dyce.adminPortIngress" -}}
{{- include "dyce.runtimeIngress" . }}
{{- end }}

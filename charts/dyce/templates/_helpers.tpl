{{/*
Names, labels and the runtime's container, volumes and pod settings.

The runtime as a sidecar of another workload (see templates/sidecar-example.yaml):

  template:
    metadata:
      labels:
        app: my-app
        {{- include "dyce.runtimePodLabels" $ | nindent 8 }}
    spec:
      {{- with include "dyce.runtimeInitContainers" $ }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: my-app
          image: my-app:1.0
        {{- include "dyce.runtimeContainer" (dict "root" $) | nindent 8 }}
      volumes:
        {{- include "dyce.runtimeVolumes" $ | nindent 8 }}

"dyce.runtimeContainer" takes a dict: "root" (the chart's top-level context, required) and
optionally "name" (container name, default "dyce"), "dataPort" (default 8080), "adminPort"
(default 9090), "dataPortName" (default "http"; port names are unique in a pod) and "resources"
(default .Values.runtime.resources). The admin port is always named "admin": the controller finds
a pod's admin port by that name. "dyce.runtimePodLabels" labels the pod so the release's default
SloPolicy, PodMonitor and admin Service select it. "dyce.runtimeInitContainers" is empty unless
runtime.modelFrom.image is enabled: then it copies the bundle into the runtime's volumes.
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

{{/* Pod-level part of the restricted Pod Security Standard. */}}
{{- define "dyce.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level part of the restricted profile (complete on its own, for sidecars). */}}
{{- define "dyce.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Where runtime.modelFrom puts the bundle, in the runtime and the init container. */}}
{{- define "dyce.modelMountPath" -}}
/var/lib/dyce/model
{{- end }}

{{/* The bundle directory the runtime loads (DYCE_MODEL); empty = the embedded model.
templates/validate.yaml makes sure at most one source is set. */}}
{{- define "dyce.modelDir" -}}
{{- $m := .Values.runtime.modelFrom }}
{{- if or $m.pvc.enabled $m.image.enabled }}
{{- include "dyce.modelMountPath" . }}
{{- else }}
{{- .Values.runtime.model }}
{{- end }}
{{- end }}

{{/* The bundle image's reference: the digest pins it when given, whatever the tag says. */}}
{{- define "dyce.modelImage" -}}
{{- with .Values.runtime.modelFrom.image }}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}
{{- end }}

{{/* Init containers of a pod with the runtime, as items of an initContainers list: with
runtime.modelFrom.image, one that copies the bundle out of its image into the emptyDir the
runtime mounts (only cp runs, so any image with a cp will do). Empty otherwise. */}}
{{- define "dyce.runtimeInitContainers" -}}
{{- with .Values.runtime.modelFrom.image }}
{{- if .enabled -}}
- name: dyce-model
  image: {{ include "dyce.modelImage" $ }}
  imagePullPolicy: {{ .pullPolicy }}
  command:
    - cp
    - -r
    - {{ printf "%s/." (trimSuffix "/" .path) | quote }}
    - {{ printf "%s/" (include "dyce.modelMountPath" $) | quote }}
  {{- with .resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "dyce.containerSecurityContext" $ | nindent 4 }}
  volumeMounts:
    - name: dyce-model
      mountPath: {{ include "dyce.modelMountPath" $ }}
{{- end }}
{{- end }}
{{- end }}

{{/* The runtime container, as one item of a containers list. */}}
{{- define "dyce.runtimeContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values.runtime }}
{{- $name := .name | default "dyce" }}
{{- $dataPort := .dataPort | default 8080 | int }}
{{- $adminPort := .adminPort | default 9090 | int }}
{{- $dataPortName := .dataPortName | default "http" }}
{{- $resources := .resources | default $v.resources -}}
- name: {{ $name }}
  image: {{ include "dyce.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    - serve
    - --data-addr
    - "0.0.0.0:{{ $dataPort }}"
    - --admin-addr
    - "0.0.0.0:{{ $adminPort }}"
    - --admin-token-file
    - /var/run/secrets/dyce/token
  env:
    - name: DYCE_MAX_BATCH
      value: {{ $v.maxBatch | quote }}
    - name: DYCE_MAX_QUEUE
      value: {{ $v.maxQueue | quote }}
    {{- if dig "limits" "cpu" "" $resources }}
    - name: DYCE_THREADS
      valueFrom:
        resourceFieldRef:
          containerName: {{ $name }}
          resource: limits.cpu
          divisor: "1"
    {{- end }}
    {{- with include "dyce.modelDir" $root }}
    - name: DYCE_MODEL
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.initialConfig }}
    - name: DYCE_INITIAL_CONFIG
      value: {{ . | quote }}
    {{- end }}
    - name: RUST_LOG
      value: {{ $v.logLevel | quote }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ $dataPortName }}
      containerPort: {{ $dataPort }}
      protocol: TCP
    - name: admin
      containerPort: {{ $adminPort }}
      protocol: TCP
  {{- /* The process binds its ports only once the bundle is read, and is ready after warm-up:
  the startup probe gives it that time; liveness and readiness start once it passes. */}}
  startupProbe:
    httpGet:
      path: /v2/health/ready
      port: {{ $dataPort }}
    periodSeconds: {{ $v.startupProbe.periodSeconds }}
    timeoutSeconds: 2
    failureThreshold: {{ $v.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /v2/health/live
      port: {{ $dataPort }}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /v2/health/ready
      port: {{ $dataPort }}
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  {{- with $resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "dyce.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - name: dyce-token
      mountPath: /var/run/secrets/dyce
      readOnly: true
    - name: dyce-tmp
      mountPath: /tmp
    {{- if or $v.modelFrom.pvc.enabled $v.modelFrom.image.enabled }}
    - name: dyce-model
      mountPath: {{ include "dyce.modelMountPath" $root }}
      readOnly: true
      {{- if and $v.modelFrom.pvc.enabled $v.modelFrom.pvc.subPath }}
      subPath: {{ $v.modelFrom.pvc.subPath | quote }}
      {{- end }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* The runtime's volumes, as items of a volumes list. Mode 0444 (292): the container runs as
65532, and a pod that takes the sidecar may have no fsGroup to give it group access. */}}
{{- define "dyce.runtimeVolumes" -}}
- name: dyce-token
  secret:
    secretName: {{ include "dyce.adminTokenSecretName" . }}
    defaultMode: 292
    items:
      - key: {{ include "dyce.adminTokenSecretKey" . }}
        path: token
- name: dyce-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.runtime.modelFrom }}
{{- if .pvc.enabled }}
- name: dyce-model
  persistentVolumeClaim:
    claimName: {{ .pvc.claimName }}
    readOnly: true
{{- else if .image.enabled }}
- name: dyce-model
  {{- with .image.sizeLimit }}
  emptyDir:
    sizeLimit: {{ . | quote }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Ingress rule letting the controller (and Prometheus if enabled) reach the admin port
named "admin", for a NetworkPolicy's ingress list. */}}
{{- define "dyce.adminPortIngress" -}}
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
    {{- with .Values.networkPolicy.prometheus }}
    {{- if .enabled }}
    {{- $peer := dict "podSelector" (dict "matchLabels" (.podLabels | default dict)) }}
    {{- if .namespaceLabels }}
    {{- $_ := set $peer "namespaceSelector" (dict "matchLabels" .namespaceLabels) }}
    {{- end }}
    {{- toYaml (list $peer) | nindent 4 }}
    {{- end }}
    {{- end }}
{{- end }}

{{/*
The runtime's container, volumes and init container, for the runtime Deployment and for any
workload that takes the runtime as a sidecar (see templates/sidecar-example.yaml):

  template:
    metadata:
      labels:
        app: my-app
        {{- include "dyce.runtimePodLabels" $ | nindent 8 }}
    spec:
      terminationGracePeriodSeconds: {{ include "dyce.terminationGracePeriodSeconds" $ }}
      securityContext:
        {{- include "dyce.podSecurityContext" $ | nindent 8 }}
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
(default 9090), "dataPortName" (default "http"; port names are unique in a pod), "grpcPort"
(default runtime.grpc.port), "grpcPortName" (default "grpc") and "resources" (default
.Values.runtime.resources). The admin port is always named "admin" (the controller finds a pod's
admin port by that name) and the metrics port "metrics" (the PodMonitor scrapes that name).
"dyce.runtimePodLabels" labels the pod so the release's default SloPolicy, PodMonitor and
metrics Service select it. "dyce.runtimeInitContainers" is empty unless runtime.modelFrom.image is
enabled: then it copies the bundle into the runtime's volumes.
*/}}

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

{{/* The runtime container, as one item of a containers list. Settings go in as environment
variables, not flags: a variable the binary does not know is ignored, a flag would stop it. */}}
{{- define "dyce.runtimeContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values.runtime }}
{{- $name := .name | default "dyce" }}
{{- $dataPort := .dataPort | default 8080 | int }}
{{- $adminPort := .adminPort | default 9090 | int }}
{{- $dataPortName := .dataPortName | default "http" }}
{{- $grpcPort := .grpcPort | default $v.grpc.port | int }}
{{- $grpcPortName := .grpcPortName | default "grpc" }}
{{- $metricsPort := $v.metrics.port | int }}
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
    - name: DYCE_METRICS_ADDR
      value: "0.0.0.0:{{ $metricsPort }}"
    {{- if $v.metrics.token.existingSecret }}
    - name: DYCE_METRICS_TOKEN_FILE
      value: /var/run/secrets/dyce-metrics/token
    {{- end }}
    - name: DYCE_GRPC_ADDR
      {{- /* The binary has no "off": off is the loopback address, out of the pod's reach. */}}
      value: "{{ ternary "0.0.0.0" "127.0.0.1" $v.grpc.enabled }}:{{ $grpcPort }}"
    - name: DYCE_MAX_BATCH
      value: {{ $v.maxBatch | quote }}
    - name: DYCE_MAX_QUEUE
      value: {{ $v.maxQueue | quote }}
    {{- with $v.decodeConcurrency }}
    - name: DYCE_DECODE_CONCURRENCY
      value: {{ . | quote }}
    {{- end }}
    - name: DYCE_MAX_BODY_BYTES
      value: {{ $v.http.maxBodyBytes | int64 | quote }}
    - name: DYCE_HEADER_TIMEOUT
      value: {{ $v.http.headerTimeoutSeconds | quote }}
    - name: DYCE_BODY_TIMEOUT
      value: {{ $v.http.bodyTimeoutSeconds | quote }}
    {{- with $v.http.requestTimeoutSeconds }}
    - name: DYCE_REQUEST_TIMEOUT
      value: {{ . | quote }}
    {{- end }}
    - name: DYCE_DRAIN_DELAY
      value: {{ $v.drain.delaySeconds | quote }}
    - name: DYCE_DRAIN_TIMEOUT
      value: {{ $v.drain.timeoutSeconds | quote }}
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
    {{- /* Live accuracy: each only when set, so the binary's defaults hold; not `with`, since
    0 (off) is a value. */}}
    {{- with $v.liveAccuracy }}
    {{- if not (kindIs "invalid" .shadowRate) }}
    - name: DYCE_SHADOW_RATE
      value: {{ .shadowRate | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" .shadowHalfLifeSeconds) }}
    - name: DYCE_SHADOW_HALF_LIFE
      value: {{ .shadowHalfLifeSeconds | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" .feedbackCapacity) }}
    - name: DYCE_FEEDBACK_CAPACITY
      value: {{ .feedbackCapacity | int64 | quote }}
    {{- end }}
    {{- end }}
    - name: RUST_LOG
      value: {{ $v.logLevel | quote }}
    - name: DYCE_LOG_FORMAT
      value: {{ $v.logFormat | quote }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ $dataPortName }}
      containerPort: {{ $dataPort }}
      protocol: TCP
    {{- if $v.grpc.enabled }}
    - name: {{ $grpcPortName }}
      containerPort: {{ $grpcPort }}
      protocol: TCP
    {{- end }}
    - name: admin
      containerPort: {{ $adminPort }}
      protocol: TCP
    - name: metrics
      containerPort: {{ $metricsPort }}
      protocol: TCP
  {{- /* The process binds its ports only once the bundle is read, and is ready after warm-up:
  the startup probe gives it that time; liveness and readiness start once it passes. */}}
  startupProbe:
    httpGet:
      path: /v2/health/ready
      port: {{ $dataPort }}
    {{- toYaml $v.startupProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /v2/health/live
      port: {{ $dataPort }}
    {{- toYaml $v.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /v2/health/ready
      port: {{ $dataPort }}
    {{- toYaml $v.readinessProbe | nindent 4 }}
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
    {{- if $v.metrics.token.existingSecret }}
    - name: dyce-metrics-token
      mountPath: /var/run/secrets/dyce-metrics
      readOnly: true
    {{- end }}
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
{{- with .Values.runtime.metrics.token }}
{{- if .existingSecret }}
- name: dyce-metrics-token
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 292
    items:
      - key: {{ .existingSecretKey }}
        path: token
{{- end }}
{{- end }}
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

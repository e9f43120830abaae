{{/* Chart name. */}}
{{- define "flashgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: resource-name prefix, at most 50 characters so suffixes fit in 63. */}}
{{- define "flashgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flashgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every resource. */}}
{{- define "flashgate.labels" -}}
helm.sh/chart: {{ include "flashgate.chart" . }}
app.kubernetes.io/name: {{ include "flashgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flashgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels per component (call with (dict "ctx" $ "component" "coordinator")). */}}
{{- define "flashgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flashgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flashgate.coordinator.fullname" -}}
{{- printf "%s-coordinator" (include "flashgate.fullname" .) }}
{{- end }}

{{- define "flashgate.etcd.fullname" -}}
{{- printf "%s-etcd" (include "flashgate.fullname" .) }}
{{- end }}

{{- define "flashgate.etcd.headless" -}}
{{- printf "%s-etcd-headless" (include "flashgate.fullname" .) }}
{{- end }}

{{/* True (non-empty) when the chart runs its own etcd. */}}
{{- define "flashgate.etcd.bundled" -}}
{{- if not .Values.etcd.endpoints }}true{{- end }}
{{- end }}

{{- define "flashgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flashgate.coordinator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flashgate.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-keys" (include "flashgate.fullname" .) }}
{{- end }}
{{- end }}

{{/* image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "flashgate.image" -}}
{{- $img := .image -}}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .ctx.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* The coordinator's --store value. */}}
{{- define "flashgate.store" -}}
{{- if .Values.etcd.endpoints }}
{{- printf "etcd:%s" (join "," .Values.etcd.endpoints) }}
{{- else }}
{{- $urls := list }}
{{- $etcd := include "flashgate.etcd.fullname" . }}
{{- $headless := include "flashgate.etcd.headless" . }}
{{- range $i := until (int .Values.etcd.replicaCount) }}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc.%s:%d" $etcd $i $headless $.Release.Namespace $.Values.clusterDomain (int $.Values.etcd.clientPort)) }}
{{- end }}
{{- printf "etcd:%s" (join "," $urls) }}
{{- end }}
{{- end }}

{{/* Pod anti-affinity for a component: (dict "ctx" $ "component" "x" "mode" "hard" "key" "…"). */}}
{{- define "flashgate.antiAffinity" -}}
podAntiAffinity:
{{- if eq .mode "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: {{ .key }}
      labelSelector:
        matchLabels:
          {{- include "flashgate.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 10 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: {{ .key }}
        labelSelector:
          matchLabels:
            {{- include "flashgate.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- end }}
{{- end }}

{{/* Container security context shared by every container. */}}
{{- define "flashgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The Secret holding the coordinator's TLS certificate. */}}
{{- define "flashgate.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}{{ .Values.tls.existingSecret }}{{ else }}{{ include "flashgate.fullname" . }}-tls{{ end }}
{{- end }}

{{/* Refuse values that would deploy something broken; called from the Deployment. */}}
{{- define "flashgate.validate" -}}
{{- $c := .Values.coordinator }}
{{- if not (has $c.podAntiAffinity (list "hard" "soft")) }}
{{- fail "coordinator.podAntiAffinity must be \"hard\" or \"soft\"" }}
{{- end }}
{{- if not (has .Values.etcd.podAntiAffinity (list "hard" "soft")) }}
{{- fail "etcd.podAntiAffinity must be \"hard\" or \"soft\"" }}
{{- end }}
{{- if lt (int $c.replicaCount) 1 }}
{{- fail "coordinator.replicaCount must be at least 1" }}
{{- end }}
{{- if and (not .Values.etcd.endpoints) (lt (int .Values.etcd.replicaCount) 1) }}
{{- fail "etcd.replicaCount must be at least 1 (or set etcd.endpoints)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (not .Values.tls.certManager.enabled) }}
{{- fail "tls.enabled needs tls.existingSecret (a kubernetes.io/tls Secret) or tls.certManager.enabled with an issuerRef" }}
{{- end }}
{{- if and .Values.tls.enabled .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and (not .Values.tls.enabled) (not .Values.tls.insecurePlaintext) }}
{{- fail "the coordinator serves only TLS: set tls.existingSecret or tls.certManager, or (development only) tls.enabled=false with tls.insecurePlaintext=true" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- range .Values.secrets.previousKeks }}
{{- if or (not .secretName) (not .key) }}
{{- fail "each secrets.previousKeks entry needs secretName and key" }}
{{- end }}
{{- end }}
{{- end }}

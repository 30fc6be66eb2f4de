{{/*
Named templates shared by every manifest of the chart.
*/}}

{{/* The chart name, overridable. */}}
{{- define "agent-security.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name: agent-security-gateway, agent-security-redis, ... */}}
{{- define "agent-security.fullname" -}}
{{- default .Chart.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels for every resource. */}}
{{- define "agent-security.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "agent-security.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels a Service selects pods by. */}}
{{- define "agent-security.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agent-security.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* In-cluster URL of the bundled Redis. */}}
{{- define "agent-security.redisUrl" -}}
{{- if .Values.externalRedis.enabled -}}
{{- printf "redis://%s:%v/0" .Values.externalRedis.host .Values.externalRedis.port -}}
{{- else -}}
{{- printf "redis://%s-redis:6379/0" (include "agent-security.fullname" .) -}}
{{- end -}}
{{- end -}}

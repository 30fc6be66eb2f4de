{{/* vim: set filetype=mustache: */}}
{{- define "mrm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mrm.fullname" -}}
{{- if contains (include "mrm.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mrm.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mrm.labels" -}}
app.kubernetes.io/name: {{ include "mrm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
An image map is either {registry, image, tag, digest} or {repository, tag, digest}.
The result is REGISTRY/IMAGE:TAG or REPOSITORY:TAG, then @DIGEST when one is set.
*/}}
{{- define "mrm.image" -}}
{{- if .repository -}}
{{- .repository -}}
{{- else -}}
{{- printf "%s/%s" .registry .image -}}
{{- end -}}
{{- printf ":%s" (toString .tag) -}}
{{- if .digest -}}
{{- printf "@%s" .digest -}}
{{- end -}}
{{- end -}}

{{/* The gateway joins registry and repository and falls back to appVersion. */}}
{{- define "mrm.gatewayImage" -}}
{{- $tag := .Values.gateway.image.tag | default .Chart.AppVersion -}}
{{- printf "%s/%s:%s" .Values.gateway.image.registry .Values.gateway.image.repository $tag -}}
{{- end -}}

{{- define "avt.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Image of a component: its own repository and tag when set, else the global
ones; the tag finally falls back to the chart's appVersion.
  {{ include "avt.image" (dict "image" .Values.controller.image "root" $) }}
*/}}
{{- define "avt.image" -}}
{{- $global := .root.Values.global.image -}}
{{- $repository := .image.repository | default (required "global.image.repository is required" $global.repository) -}}
{{- $tag := .image.tag | default $global.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository (toString $tag) -}}
{{- end -}}

{{- define "avt.labels" -}}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ regexReplaceAll "[^a-zA-Z0-9._-]" .Chart.AppVersion "_" | trunc 63 | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name (.Chart.Version | replace "+" "_") }}
{{- end -}}

{{- define "avt.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* The host name of the issuer, without scheme or path. */}}
{{- define "avt.issuerHost" -}}
{{- regexReplaceAll "^https?://([^/:]+).*$" .Values.sso.issuer "${1}" -}}
{{- end -}}

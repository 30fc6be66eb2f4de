{{/*
The image of an image map: registry (or global.imageRegistry), repository, then the digest,
the tag, or the chart's appVersion when both are empty.
  {{ include "umbrella-images.image" (dict "image" .Values.image "global" .Values.global "chart" .Chart) }}
*/}}
{{- define "umbrella-images.image" -}}
{{- $registry := .image.registry -}}
{{- with .global.imageRegistry }}{{ $registry = . }}{{ end -}}
{{- $name := printf "%s/%s" $registry .image.repository -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $name .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (.image.tag | default .chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{- define "umbrella-images.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

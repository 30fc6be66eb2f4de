{{- define "pa.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
registry/repository:tag, the registry replaced by global.imageRegistry when set,
the tag defaulting to "v" + appVersion, and @digest appended when set.
  {{ include "pa.image" (dict "image" .Values.x.image "root" $) }}
*/}}
{{- define "pa.image" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry -}}
{{- $tag := .image.tag | default (printf "v%s" .root.Chart.AppVersion) -}}
{{- if .image.digest -}}
{{- printf "%s/%s:%s@%s" $registry .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "ly.name" -}}
{{- if eq .root.Release.Name .root.Chart.Name -}}
{{- printf "%s-%s" .root.Release.Name .part -}}
{{- else -}}
{{- printf "%s-%s-%s" .root.Release.Name .root.Chart.Name .part -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag, each part with a default of its own */}}
{{- define "ly.image" -}}
{{- printf "%s/%s:%s" (default "docker.io" .image.registry) (default .repository .image.repository) (default .tag .image.tag | toString) -}}
{{- end -}}

{{- define "ly.broadcastUri" -}}
{{- printf "postgres://postgres:postgres@%s:5432/postgres" (include "ly.name" (dict "root" . "part" "pgsql")) -}}
{{- end -}}

{{/*
Full name of an image.
  {{ include "common.images.image" (dict "imageRoot" .Values.path.to.image "global" .Values.global "chart" .Chart) }}
imageRoot holds registry, repository, tag and digest. A non-empty
global.imageRegistry replaces the registry of every image. A digest, when set,
is used instead of the tag; an empty tag falls back to the chart's appVersion.
*/}}
{{- define "common.images.image" -}}
{{- $registry := .imageRoot.registry -}}
{{- if .global -}}
  {{- with .global.imageRegistry -}}
    {{- $registry = . -}}
  {{- end -}}
{{- end -}}
{{- $ref := .imageRoot.repository -}}
{{- if $registry -}}
  {{- $ref = printf "%s/%s" $registry .imageRoot.repository -}}
{{- end -}}
{{- if .imageRoot.digest -}}
  {{- printf "%s@%s" $ref (toString .imageRoot.digest) -}}
{{- else if .imageRoot.tag -}}
  {{- printf "%s:%s" $ref (toString .imageRoot.tag) -}}
{{- else if .chart -}}
  {{- printf "%s:%s" $ref (toString .chart.AppVersion) -}}
{{- else -}}
  {{- $ref -}}
{{- end -}}
{{- end -}}

{{/*
imagePullSecrets from the images' own pullSecrets and global.imagePullSecrets.
  {{ include "common.images.pullSecrets" (dict "images" (list .Values.image) "global" .Values.global) }}
*/}}
{{- define "common.images.pullSecrets" -}}
{{- $names := list -}}
{{- if .global -}}
  {{- range .global.imagePullSecrets -}}
    {{- $names = append $names (ternary .name . (kindIs "map" .)) -}}
  {{- end -}}
{{- end -}}
{{- range .images -}}
  {{- range .pullSecrets -}}
    {{- $names = append $names (ternary .name . (kindIs "map" .)) -}}
  {{- end -}}
{{- end -}}
{{- if $names }}
imagePullSecrets:
  {{- range $names | uniq }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

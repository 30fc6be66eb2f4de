{{/* The proxy image: each part falls back to this release's default when the values leave it empty. */}}
{{- define "edge.image" -}}
{{- $registry := .Values.image.registry | default "docker.io" -}}
{{- $repository := .Values.image.repository | default (ternary "acme-edge/proxy-licensed" "acme-proxy" .Values.edition.licensed) -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s/%s:%s" $registry $repository $tag -}}
{{- with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* The hub agent image: the licensed edition is pulled from the vendor's registry. */}}
{{- define "edge.hubImage" -}}
{{- $registry := .Values.hub.image.registry | default (ternary "registry.acme-edge.io" "ghcr.io" .Values.edition.licensed) -}}
{{ $registry }}/{{ .Values.hub.image.repository | default "acme-edge/hub-agent" }}:{{ .Values.hub.image.tag | default "1.8.2" }}
{{- end -}}

{{/* The gateway image: a digest, when set, is written in place of the tag. */}}
{{- define "edge.gatewayImage" -}}
{{- $registry := .Values.gateway.image.registry | default "quay.io" -}}
{{- $repository := .Values.gateway.image.repository | default "acme-edge/gateway" -}}
{{- if .Values.gateway.image.digest -}}
{{- printf "%s/%s@%s" $registry $repository .Values.gateway.image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry $repository (.Values.gateway.image.tag | default "2.4.0") -}}
{{- end -}}
{{- end -}}

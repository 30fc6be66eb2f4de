{{/*
Stops rendering when an image is not one the chart was released with.
  {{ include "common.checks.shippedImages" (dict "images" (list .Values.image) "context" $) }}
The shipped images are the `image:` lines of the parent chart's `images`
annotation. Setting global.security.allowInsecureImages turns the stop into a
printed warning.
*/}}
{{- define "common.checks.shippedImages" -}}
{{- $shipped := list -}}
{{- range (regexFindAll "image: *[^ \n]+" (default "" .context.Chart.Annotations.images) -1) -}}
  {{- $shipped = append $shipped (trim (trimPrefix "image:" .)) -}}
{{- end -}}
{{- $global := default dict .context.Values.global -}}
{{- $changed := list -}}
{{- range .images -}}
  {{- $registry := default .registry $global.imageRegistry -}}
  {{- $name := printf "%s/%s:%s" $registry .repository (toString .tag) -}}
  {{- if not (has $name $shipped) -}}
    {{- $changed = append $changed $name -}}
  {{- end -}}
{{- end -}}
{{- $allow := false -}}
{{- with $global.security -}}
  {{- $allow = .allowInsecureImages -}}
{{- end -}}
{{- if and $changed (not $allow) -}}
  {{- fail (printf "\n\nOriginal containers have been substituted: %s.\nThis chart is only tested with the images listed in its Chart.yaml. To accept other images set global.security.allowInsecureImages=true." (join ", " $changed)) -}}
{{- else if $changed -}}
  {{- printf "\nWARNING: Original containers have been substituted (%s); image checks were skipped because global.security.allowInsecureImages is true.\n" (join ", " $changed) -}}
{{- end -}}
{{- end -}}

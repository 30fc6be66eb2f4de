{{- define "bs.image" -}}
{{ include "common.images.image" (dict "imageRoot" .Values.image "global" .Values.global "chart" .Chart) }}
{{- end -}}

{{- define "bs.volumePermissions.image" -}}
{{ include "common.images.image" (dict "imageRoot" .Values.volumePermissions.image "global" .Values.global) }}
{{- end -}}

{{- define "bs.configCli.image" -}}
{{ include "common.images.image" (dict "imageRoot" .Values.keycloakConfigCli.image "global" .Values.global) }}
{{- end -}}

{{- define "bs.pullSecrets" -}}
{{- include "common.images.pullSecrets" (dict "images" (list .Values.image .Values.volumePermissions.image .Values.keycloakConfigCli.image) "global" .Values.global) -}}
{{- end -}}

{{- define "bs.serverUrl" -}}
{{- printf "http://%s:%v" (include "common.names.fullname" .) .Values.service.ports.http -}}
{{- end -}}

{{- define "ctl.dbUrl" -}}
postgres://{{ .Values.db.host }}:{{ .Values.db.port }}/app
{{- end }}

{{/* The gateway's pod, indented as it sits under `template:`; gateway.yaml reads it back as YAML. */}}
{{- define "edge.gatewayPod" }}
    metadata:
      labels:
        app: gateway
    spec:
      containers:
        - name: gateway
          image: {{ template "edge.gatewayImage" . }}
          args:
            - --listen=:{{ .Values.gateway.port }}
      {{- /* A certificate someone created in the namespace is mounted when it exists. */}}
      {{- if lookup "v1" "Secret" .Release.Namespace "acme-gateway-tls" }}
          volumeMounts:
            - name: tls
              mountPath: /certs
      volumes:
        - name: tls
          secret:
            secretName: acme-gateway-tls
      {{- end }}
{{- end }}

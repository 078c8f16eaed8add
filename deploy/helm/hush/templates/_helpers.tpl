{{- define "hush.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "hush.labels" -}}
app.kubernetes.io/name: hush
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "hush.selector" -}}
app.kubernetes.io/name: hush
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hush.keysSecret" -}}
{{- if .Values.existingKeysSecret }}{{ .Values.existingKeysSecret }}{{ else }}{{ .Release.Name }}-keys{{ end -}}
{{- end -}}

{{- define "hush.dbSecret" -}}
{{- if .Values.existingDatabaseSecret }}{{ .Values.existingDatabaseSecret }}{{ else }}{{ .Release.Name }}-db{{ end -}}
{{- end -}}

{{- define "hush.image" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{/* The image's user (Dockerfile: uid 10001), no privileges, a read-only root. */}}
{{- define "hush.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "hush.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "hush.probes" -}}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 6
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}

{{/* The IdP settings the three public services share: the issuer (discovery finds the keys),
     optionally a JWKS URL that skips discovery, and a CA file from the keys Secret. */}}
{{- define "hush.jwtEnv" -}}
- {name: HUSH_OIDC_ISSUER, value: {{ .Values.idp.issuer | quote }}}
- {name: HUSH_JWT_AUDIENCE, value: {{ .Values.idp.audience | quote }}}
{{- with .Values.idp.jwksUrl }}
- {name: HUSH_JWKS_URL, value: {{ . | quote }}}
{{- end }}
{{- with .Values.idp.caKey }}
- {name: HUSH_OIDC_CA_FILE, value: /run/secrets/hush/{{ . }}}
{{- end }}
- {name: HUSH_LOG_FORMAT, value: json}
{{- end -}}

{{- define "hush.databaseEnv" -}}
- name: HUSH_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "hush.dbSecret" .root }}, key: {{ .key }}}
{{- end -}}

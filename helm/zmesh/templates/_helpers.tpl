{{- define "zmesh.name" -}}zmesh{{- end -}}
{{- define "zmesh.labels" -}}
app.kubernetes.io/name: zmesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "zmesh.selector" -}}
app.kubernetes.io/name: zmesh
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

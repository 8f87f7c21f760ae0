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
{{- /* The DaemonSet's ServiceAccount: serviceAccount.name, else ztunnel with xDS (the account
istiod lets impersonate workload identities), else zmesh. */ -}}
{{- define "zmesh.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (ternary "ztunnel" (include "zmesh.name" .) .Values.xds.enabled) -}}
{{- end -}}
{{- /* "true" when zmeshd reads the mesh config file: always without xDS; with it, only when
the mesh values name something (the file is then a layer under istiod's resources). */ -}}
{{- define "zmesh.meshConfig" -}}
{{- if or (not .Values.xds.enabled) .Values.mesh.workloads .Values.mesh.services .Values.mesh.policies -}}true{{- end -}}
{{- end -}}
{{- /* "true" when the built-in CA (ca.secretName, --ca-dir) issues the certificates: always
without xDS; with it only when xds.certificatesFrom is ca. */ -}}
{{- define "zmesh.builtinCa" -}}
{{- if or (not .Values.xds.enabled) (eq .Values.xds.certificatesFrom "ca") -}}true{{- end -}}
{{- end -}}
{{- /* "true" when the install-cni container runs: cni.enabled, or xDS (pods are enrolled only
through the CNI plugin then). */ -}}
{{- define "zmesh.cni" -}}
{{- if or .Values.cni.enabled .Values.xds.enabled -}}true{{- end -}}
{{- end -}}

{{/* The capabilities zmesh needs, not a privileged container: BPF (load programs, maps),
NET_ADMIN (tc, routing rules, IP_TRANSPARENT), SYS_ADMIN (cgroup attach, bpffs pins), PERFMON
(BPF helpers that read kernel memory), SYS_RESOURCE (locked memory). zmeshd and its preflight
run with the same. */}}
{{- define "zmesh.securityContext" -}}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  add: [BPF, NET_ADMIN, SYS_ADMIN, PERFMON, SYS_RESOURCE]
{{- end }}

{{/* The host's bpffs and cgroup hierarchy, where zmesh pins and attaches. */}}
{{- define "zmesh.kernelMounts" -}}
- {name: bpffs, mountPath: {{ .Values.hostPaths.bpffs }}}
- {name: cgroup, mountPath: {{ .Values.hostPaths.cgroup }}, readOnly: true}
{{- end }}

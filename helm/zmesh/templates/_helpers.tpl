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

{{/* The capabilities zmesh needs, not a privileged container, and none more: the privilege
test (tests/e2e/privileges_test.cpp) runs the image's zmeshd with exactly these, then without
each, and each missing one fails with a clear error.
- NET_ADMIN: tc programs, the fwmark routing rule, SO_MARK and IP_TRANSPARENT sockets.
- SYS_ADMIN: the types (BTF) of pinned maps, read on every restart to tell whether their layout
  changed (the kernel shows them to CAP_SYS_ADMIN only). It also makes the kernel's
  bpf_capable() and perfmon_capable() true, so BPF and PERFMON would add nothing.
- No SYS_RESOURCE: BPF memory is charged to the memory cgroup (since kernel 5.11; the
  preflight requires 5.15), not RLIMIT_MEMLOCK.
zmeshd and its preflight run with the same. */}}
{{- define "zmesh.securityContext" -}}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  add: [NET_ADMIN, SYS_ADMIN]
{{- end }}

{{/* The host's bpffs and cgroup hierarchy, where zmesh pins and attaches. */}}
{{- define "zmesh.kernelMounts" -}}
- {name: bpffs, mountPath: {{ .Values.hostPaths.bpffs }}}
- {name: cgroup, mountPath: {{ .Values.hostPaths.cgroup }}, readOnly: true}
{{- end }}

#!/usr/bin/env bash
# The Helm chart with the real helm binary (scripts/install-helm.sh): lint, render with default
# and non-default values, and refuse values the schema forbids. Asserts on the rendered objects.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
helm=$repo/.tools/helm/helm
chart=$repo/helm/zmesh
[ -x "$helm" ] || "$repo/scripts/install-helm.sh" || { echo "no helm"; exit 1; }
passed=0 failed=0
check() {  # check DESCRIPTION COMMAND...: one assertion
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
# has TEXT [--] PATTERN: the "--" lets a pattern start with dashes.
has() { local text=$1; shift; [ "$1" = -- ] && shift; grep -qE -- "$1" <<<"$text"; }
lacks() { ! has "$@"; }

check "helm lint passes" "$helm" lint "$chart"

defaults=$("$helm" template z "$chart" --namespace zmesh-system 2>&1)
ds=$("$helm" template z "$chart" --namespace zmesh-system --show-only templates/daemonset.yaml 2>&1)
check "renders a DaemonSet" has "$defaults" '^kind: DaemonSet$'
check "renders ServiceAccount, ClusterRole(+Binding), ConfigMaps (mesh, dashboard)" \
  bash -c "grep -c '^kind: \(ServiceAccount\|ClusterRole\|ClusterRoleBinding\|ConfigMap\)$' <<<\"\$0\" | grep -qx 5" "$defaults"
check "runs in the node's network namespace" has "$ds" 'hostNetwork: true'
check "is not privileged" has "$ds" 'privileged: false'
check "adds NET_ADMIN and SYS_ADMIN, nothing else (tests/e2e/privileges_test.cpp)" has "$ds" 'add: \[NET_ADMIN, SYS_ADMIN\]'
check "drops every other capability" has "$ds" 'drop: \[ALL\]'
check "mounts bpffs and cgroups from the host" bash -c "grep -q 'path: /sys/fs/bpf' <<<\"\$0\" && grep -q 'path: /sys/fs/cgroup' <<<\"\$0\"" "$ds"
check "control socket and runtime state on the host (/run/zmesh)" bash -c "grep -q -- '--state-dir=/run/zmesh' <<<\"\$0\" && grep -q 'path: /run/zmesh, type: DirectoryOrCreate' <<<\"\$0\"" "$ds"
check "preStop drains through /quitquitquit" has "$ds" 'httpGet: {host: 127.0.0.1, path: /quitquitquit, port: 15000}'
check "no CNI plugin unless asked (it needs the pod CIDRs)" lacks "$ds" 'install-cni'
check "tolerates every taint" has "$ds" 'operator: Exists'
check "readiness probe on 15021" has "$ds" 'path: /healthz/ready, port: 15021'
check "short-cut off by default" has "$ds" -- '--sockmap=off'
check "grace period = drain + 5 s" has "$ds" 'terminationGracePeriodSeconds: 15'
check "image tag defaults to appVersion" has "$ds" 'zmeshd:0.1.0"'
check "the preflight runs zmeshd --check from the same image before zmeshd" bash -c "python3 - \"\$0\" <<'PY'
import sys, yaml
spec = yaml.safe_load(sys.argv[1])['spec']['template']['spec']
init, = spec['initContainers']
main = next(c for c in spec['containers'] if c['name'] == 'zmeshd')
assert init['name'] == 'preflight' and init['args'] == ['--check', '--bpf-root=/sys/fs/bpf/zmesh'], init
assert init['image'] == main['image'], 'another image'
assert init['securityContext'] == main['securityContext'], 'other privileges'
assert init['terminationMessagePolicy'] == 'FallbackToLogsOnError'
assert [m['mountPath'] for m in init['volumeMounts']] == ['/sys/fs/bpf', '/sys/fs/cgroup']
PY" "$ds"
check "no --uplink: every interface is hooked" lacks "$ds" -- '--uplink'
check "the node's own connects are captured by default" has "$ds" -- '--node-capture=on'
check "kubelet probes found by their cgroup by default" has "$ds" -- '--probe-cgroup=auto'
check "no PodMonitor by default" lacks "$defaults" 'kind: PodMonitor'
check "the mesh config is valid JSON" bash -c "grep -A1 '^  mesh.json: |' <<<\"\$0\" | tail -1 | grep -q '{\"policies\":\[\],\"services\":\[\],\"workloads\":\[\]}'" "$defaults"

cleanup=$("$helm" template z "$chart" --namespace zmesh-system --show-only templates/daemonset.yaml --set cleanup=true \
  --set cni.enabled=true --set 'podCidrs={10.244.0.0/16}' 2>&1)
check "cleanup mode: removes zmesh and the CNI entry from each node, then holds" bash -c "python3 - \"\$0\" <<'PY'
import sys, yaml
spec = yaml.safe_load(sys.argv[1])['spec']['template']['spec']
cleanup, cni = spec['initContainers']
hold, = spec['containers']
assert cleanup['args'] == ['--cleanup', '--bpf-root=/sys/fs/bpf/zmesh'], cleanup
assert cleanup['securityContext']['capabilities']['add'] == ['NET_ADMIN', 'SYS_ADMIN']
assert cni['command'][:2] == ['/usr/local/bin/zmesh-cni', 'uninstall'], cni
assert hold['args'] == ['--hold'] and hold['securityContext']['capabilities'] == {'drop': ['ALL']}, hold
assert 'readinessProbe' not in hold and 'lifecycle' not in hold
PY" "$cleanup"

dashboard=$("$helm" template z "$chart" --namespace zmesh-system --show-only templates/dashboard.yaml 2>&1)
check "the Grafana dashboard ConfigMap carries the sidecar's label" has "$dashboard" 'grafana_dashboard: "1"'
check "the rendered dashboard is the chart's dashboards/zmesh.json, valid JSON" bash -c \
  "python3 - \"\$0\" \"\$1\" <<'PY'
import json, sys, yaml
rendered = json.loads(yaml.safe_load(sys.argv[1])['data']['zmesh.json'])
assert rendered == json.load(open(sys.argv[2])), 'differs'
assert len(rendered['panels']) >= 8
PY" "$dashboard" "$chart/dashboards/zmesh.json"
check "no dashboard when disabled" bash -c "\"\$0\" template z \"\$1\" --set grafanaDashboard.enabled=false | grep -q 'zmesh.json: |' && exit 1 || exit 0" "$helm" "$chart"

custom=$("$helm" template z "$chart" --namespace mesh --set image.tag=1.2.3 --set sockmap=true \
  --set probeCgroup=/sys/fs/cgroup/kubelet.slice --set drainTimeoutSeconds=30 --set podMonitor.enabled=true \
  --set trustDomain=example.org --set cni.enabled=true --set 'podCidrs={10.244.0.0/16,fd00:244::/48}' 2>&1)
check "custom: pod CIDRs become --pod-cidr flags" bash -c "grep -c -- '--pod-cidr=' <<<\"\$0\" | grep -qx 2" "$custom"
check "custom: installs zmesh-cni into the node's chain and keeps it there" bash -c "grep -q 'name: install-cni' <<<\"\$0\" && grep -q -- '--conf-dir=/host/cni/net.d' <<<\"\$0\" && grep -q -- '--wait\]' <<<\"\$0\" && grep -q 'path: /etc/cni/net.d, type: DirectoryOrCreate' <<<\"\$0\" && grep -q 'path: /opt/cni/bin, type: DirectoryOrCreate' <<<\"\$0\"" "$custom"
check "custom: the CNI plugin fails closed unless told" lacks "$custom" -- '--fail-open'
check "an ordinary rollout detaches nothing: no cleanup, and the CNI installer keeps its entry (--wait)" bash -c \
  "! grep -q -- '--cleanup\|--hold\|zmesh-cni, uninstall' <<<\"\$0\"" "$custom"
check "CNI without pod CIDRs is refused with the reason" bash -c "\"\$0\" template z \"\$1\" --set cni.enabled=true 2>&1 | grep -q 'cni.enabled needs podCidrs'" "$helm" "$chart"
check "schema refuses a pod CIDR that is not one" bash -c "! \"\$0\" template z \"\$1\" --set 'podCidrs={everything}'" "$helm" "$chart"
check "custom: image tag" has "$custom" 'zmeshd:1.2.3"'
check "custom: short-cut on" has "$custom" -- '--sockmap=on'
check "custom: the kubelet's cgroup" has "$custom" -- '--probe-cgroup=/sys/fs/cgroup/kubelet.slice'
check "custom: drain 30 s, grace 35 s" bash -c "grep -q -- '--drain-timeout-ms=30000' <<<\"\$0\" && grep -q 'terminationGracePeriodSeconds: 35' <<<\"\$0\"" "$custom"
check "custom: PodMonitor on the metrics port" bash -c "grep -q '^kind: PodMonitor$' <<<\"\$0\" && grep -q 'port: metrics' <<<\"\$0\"" "$custom"
check "custom: trust domain" has "$custom" -- '--trust-domain=example.org'
check "custom: release namespace" has "$custom" 'namespace: mesh'

check "schema refuses a relative probe cgroup" bash -c "! \"\$0\" template z \"\$1\" --set probeCgroup=kubelet" "$helm" "$chart"
check "schema refuses an unknown log level" bash -c "! \"\$0\" template z \"\$1\" --set logLevel=loud" "$helm" "$chart"
check "schema refuses a negative drain" bash -c "! \"\$0\" template z \"\$1\" --set drainTimeoutSeconds=-1" "$helm" "$chart"

# In place of ztunnel, fed by istiod (docs/istio.md).
xds=$("$helm" template z "$chart" --namespace istio-system --set xds.enabled=true --set xds.clusterId=c9 2>&1)
xds_ds=$("$helm" template z "$chart" --namespace istio-system --set xds.enabled=true --set xds.clusterId=c9 \
  --show-only templates/daemonset.yaml 2>&1)
check "xds: renders a DaemonSet" has "$xds_ds" '^kind: DaemonSet$'
check "xds: --xds-address is istiod's" has "$xds_ds" -- '- --xds-address=istiod\.istio-system\.svc:15012$'
check "xds: --xds-root-cert in the mounted root" has "$xds_ds" -- '- --xds-root-cert=/var/run/secrets/istio/root-cert\.pem$'
check "xds: --xds-token is the projected token" has "$xds_ds" -- '- --xds-token=/var/run/secrets/tokens/istio-token$'
check "xds: --cluster-id from the values" has "$xds_ds" -- '- --cluster-id=c9$'
check "xds: no --xds-server-name unless set" lacks "$xds_ds" -- '--xds-server-name'
check "xds: --node from NODE_NAME" has "$xds_ds" -- '- --node=\$\(NODE_NAME\)$'
envvar() {  # envvar TEXT NAME FIELDPATH: NAME comes from the downward API's FIELDPATH
  grep -A1 -- "- name: $2\$" <<<"$1" | grep -qF "valueFrom: {fieldRef: {fieldPath: $3}}"
}
check "xds: NODE_NAME from spec.nodeName" envvar "$xds_ds" NODE_NAME spec.nodeName
check "xds: INSTANCE_IP from status.podIP" envvar "$xds_ds" INSTANCE_IP status.podIP
check "xds: POD_NAME from metadata.name" envvar "$xds_ds" POD_NAME metadata.name
check "xds: POD_NAMESPACE from metadata.namespace" envvar "$xds_ds" POD_NAMESPACE metadata.namespace
check "xds: certificates from istiod: no --ca-dir, no CA Secret" bash -c "! grep -qE -- '- --ca-dir|secretName: zmesh-ca|name: ca,' <<<\"\$0\"" "$xds_ds"
check "xds: no empty mesh config file (--config, its ConfigMap)" bash -c "! grep -qE -- '--config=|zmesh-mesh|checksum/mesh' <<<\"\$0\"" "$xds"
check "xds: the pod objects parse, and the volumes are istiod's root and a projected token" bash -c \
  "python3 - \"\$0\" <<'PY'
import sys, yaml
ds = yaml.safe_load(sys.argv[1])
pod = ds['spec']['template']['spec']
volumes = {v['name']: v for v in pod['volumes']}
zmeshd = next(c for c in pod['containers'] if c['name'] == 'zmeshd')
mounts = {m['name']: m for m in zmeshd['volumeMounts']}
root = volumes['istiod-ca-cert']['configMap']
assert root['name'] == 'istio-ca-root-cert', root
assert {'key': 'root-cert.pem', 'path': 'root-cert.pem'} in root['items'], root
assert mounts['istiod-ca-cert']['mountPath'] == '/var/run/secrets/istio', mounts
token = volumes['istio-token']['projected']['sources'][0]['serviceAccountToken']
assert token == {'audience': 'istio-ca', 'expirationSeconds': 43200, 'path': 'istio-token'}, token
assert mounts['istio-token']['mountPath'] == '/var/run/secrets/tokens', mounts
assert mounts['istio-token'].get('readOnly') and mounts['istiod-ca-cert'].get('readOnly')
assert pod['serviceAccountName'] == 'ztunnel', pod['serviceAccountName']
PY" "$xds_ds"
check "xds: the CNI plugin is installed and writes \"identityFromXds\": true" bash -c \
  "grep -q 'name: install-cni' <<<\"\$0\" && grep -q -- '--identity-from-xds, --wait\]' <<<\"\$0\"" "$xds_ds"
check "xds: runs as ztunnel's service account (istiod's trusted node account)" bash -c \
  "grep -A2 '^kind: ServiceAccount$' <<<\"\$0\" | grep -qx '  name: ztunnel' && grep -q 'serviceAccountName: ztunnel' <<<\"\$0\" && grep -A1 -- '- kind: ServiceAccount' <<<\"\$0\" | grep -q 'name: ztunnel'" "$xds"
xds_custom=$("$helm" template z "$chart" --namespace istio-system --set xds.enabled=true \
  --set xds.address=10.96.0.10:15012 --set xds.serverName=istiod.istio-system.svc --set serviceAccount.name=zt2 \
  --set xds.certificatesFrom=ca --set 'mesh.policies[0].name=p' --show-only templates/daemonset.yaml 2>&1)
check "xds custom: address and server name" bash -c "grep -q -- '- --xds-address=10.96.0.10:15012$' <<<\"\$0\" && grep -q -- '- --xds-server-name=istiod.istio-system.svc$' <<<\"\$0\"" "$xds_custom"
check "xds custom: serviceAccount.name wins" has "$xds_custom" 'serviceAccountName: zt2$'
check "xds custom: certificatesFrom=ca keeps the built-in CA" bash -c "grep -q -- '--ca-dir=/etc/zmesh/ca' <<<\"\$0\" && grep -q 'secretName: zmesh-ca' <<<\"\$0\"" "$xds_custom"
check "xds custom: a mesh config that names something is still read" has "$xds_custom" -- '--config=/etc/zmesh/mesh/mesh.json'
check "default: none of the xDS flags" lacks "$ds" -- '--xds-|--cluster-id'
check "default: no INSTANCE_IP, POD_NAME, POD_NAMESPACE" lacks "$ds" 'name: (INSTANCE_IP|POD_NAME|POD_NAMESPACE)$'
check "default: no istiod root, no projected token" lacks "$ds" 'istio-ca-root-cert|/var/run/secrets/istio|serviceAccountToken|audience: istio-ca'
check "default: no identityFromXds" lacks "$custom" -- '--identity-from-xds'
check "default: the built-in CA and the mesh config" bash -c "grep -q -- '--ca-dir=/etc/zmesh/ca' <<<\"\$0\" && grep -q -- '--config=/etc/zmesh/mesh/mesh.json' <<<\"\$0\"" "$ds"
check "default: service account zmesh" has "$ds" 'serviceAccountName: zmesh$'
check "schema refuses an xDS address without a port" bash -c "! \"\$0\" template z \"\$1\" --set xds.enabled=true --set xds.address=istiod.istio-system.svc" "$helm" "$chart"
check "schema refuses xds.enabled that is not a boolean" bash -c "! \"\$0\" template z \"\$1\" --set xds.enabled=yes" "$helm" "$chart"
check "schema refuses an unknown xds key" bash -c "! \"\$0\" template z \"\$1\" --set xds.clusterID=c9" "$helm" "$chart"
check "schema refuses a token shorter than the API allows" bash -c "! \"\$0\" template z \"\$1\" --set xds.enabled=true --set xds.token.expirationSeconds=60" "$helm" "$chart"
check "schema refuses a relative token path" bash -c "! \"\$0\" template z \"\$1\" --set xds.enabled=true --set xds.token.path=istio-token" "$helm" "$chart"
check "a token in the root's directory is refused with the reason" bash -c "\"\$0\" template z \"\$1\" --set xds.enabled=true --set xds.token.path=/var/run/secrets/istio/t 2>&1 | grep -q 'holds the mesh root'" "$helm" "$chart"
check "helm lint passes with xDS on" "$helm" lint "$chart" --set xds.enabled=true

echo "chart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

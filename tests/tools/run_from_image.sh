#!/usr/bin/env bash
# run_from_image.sh ROOTFS CAPS [ARG...]: runs the image's zmeshd (ROOTFS: an unpacked zmesh
# image) as the chart's DaemonSet runs it, for the privilege test (issue 19): uid 0 with exactly
# the capabilities CAPS (comma list, e.g. bpf,net_admin; "none" for none) in its bounding set,
# so in its permitted and effective sets after exec, no new privileges, the root file system
# read-only, and the host's /proc, /sys (bpffs, cgroups), /dev and /run (the lab keeps its
# state, configs and sockets there, as the chart's hostPath /run/zmesh) mounted in, in a mount
# namespace of its own. Everything else comes from the image: its loader and libraries.
# RUN_FROM_IMAGE_BINARY runs another of the image's binaries (default /usr/local/bin/zmeshd).
set -euo pipefail
rootfs=$(realpath "$1")
caps=$2
shift 2
binary=${RUN_FROM_IMAGE_BINARY:-/usr/local/bin/zmeshd}
[ -x "$rootfs$binary" ] || { echo "run_from_image: no $binary in $rootfs" >&2; exit 2; }

# Every capability this kernel knows but CAPS: the bounding set to drop.
keep=",${caps,,},"
drop=()
IFS=, read -ra all <<<"$(capsh --print | sed -n 's/^Bounding set =//p')"
for cap in "${all[@]}"; do
  [[ $keep == *",${cap#cap_},"* ]] || drop+=("$cap")
done
drop_list=$(IFS=,; echo "${drop[*]}")

exec unshare --mount --propagation private bash -c '
  set -e
  root=$1 drop=$2 binary=$3
  shift 3
  mount --bind "$root" "$root"
  for fs in proc sys dev run; do
    mkdir -p "$root/$fs" 2>/dev/null || true
    mount --rbind "/$fs" "$root/$fs"
  done
  mount -o remount,bind,ro "$root"
  exec capsh --chroot="$root" --drop="$drop" --no-new-privs --shell="$binary" -- "$@"
' run_from_image "$rootfs" "$drop_list" "$binary" "$@"

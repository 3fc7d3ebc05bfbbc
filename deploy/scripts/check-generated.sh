#!/usr/bin/env bash
# Fails when packages/proto/src/gen is stale: regenerates from proto/ into a
# scratch directory and compares. Also runs `buf lint`.
set -euo pipefail
cd "$(dirname "$0")/../.."
buf=node_modules/.bin/buf
"$buf" lint
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$buf" generate -o "$scratch"
if ! diff -r "$scratch/packages/proto/src/gen" packages/proto/src/gen >/dev/null; then
  echo "generated code is stale: run 'npm run generate' and commit packages/proto/src/gen" >&2
  diff -r "$scratch/packages/proto/src/gen" packages/proto/src/gen | head -20 >&2
  exit 1
fi
echo "generated code is up to date; buf lint is clean"

#!/usr/bin/env bash
# Fails when packages/proto/src/gen or docs/api.md is stale: regenerates both
# from proto/ into a scratch directory and compares. Also runs `buf lint`.
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
"$buf" generate --template buf.gen.docs.yaml -o "$scratch"
if ! diff "$scratch/docs/api.md" docs/api.md >/dev/null; then
  echo "docs/api.md is stale: run 'npm run generate' and commit docs/api.md" >&2
  diff "$scratch/docs/api.md" docs/api.md | head -20 >&2
  exit 1
fi
echo "generated code and docs/api.md are up to date; buf lint is clean"

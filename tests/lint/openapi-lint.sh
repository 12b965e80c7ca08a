#!/bin/sh
# Lints both OpenAPI documents with @redocly/cli (installed by scripts/install-deps.sh from
# tests/lint/package-lock.json). Fails on any error or warning redocly.yaml does not switch off.
set -eu
src=$1
redocly=${TOTEBOX_REDOCLY:-/usr/local/libexec/totebox/lint/node_modules/.bin/redocly}
if [ ! -x "$redocly" ]; then
  echo "openapi-lint: no redocly at '$redocly' (run scripts/install-deps.sh)" >&2
  exit 1
fi
# no telemetry, no update check: the tests reach no network
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
"$redocly" lint --config "$src/tests/lint/redocly.yaml" --format=stylish \
  "$src/schemas/openapi.json" "$src/schemas/node-api.openapi.json"

#!/usr/bin/env bash
# Installs the pinned npm packages (package-lock.json) into DEPS_DIR, then validates
# deploy/kubernetes/ and the rendered overlay deploy/kubernetes-tls/ offline
# (validate_manifests.mjs). CTest runs it as deploy_manifests; by hand:  bash tests/deploy/run_validate.sh build/tests/deploy/node-deps
#
# Idempotent: `npm ci` runs only when DEPS_DIR has no install of this very lock file.
# Needs Debian's nodejs and npm (scripts/setup.sh) and the npm registry; exits 77
# (skipped) when the registry cannot be reached.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
deps="${1:?usage: run_validate.sh DEPS_DIR}"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "deploy_manifests: '$tool' not found; install Debian's nodejs and npm" \
      "(apt-get install nodejs npm)" >&2
    exit 2
  fi
done

mkdir -p "$deps"
stamp="$deps/installed-package-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp" || [ ! -d "$deps/node_modules" ]; then
  rm -f "$stamp"
  cp "$here/package.json" "$here/package-lock.json" "$deps/"
  # No install scripts are needed (the packages are plain JavaScript).
  if ! npm ci --prefix "$deps" --ignore-scripts --no-audit --no-fund --no-update-notifier \
    --loglevel=error 2>"$deps/npm-ci.log"; then
    cat "$deps/npm-ci.log" >&2
    # The registry cannot be reached or its certificate not verified (no
    # network, or TLS intercepted by a proxy whose CA this machine lacks):
    # the schemas cannot be had, so the test is skipped (77, CTest's
    # SKIP_RETURN_CODE), never passed. Any other npm failure fails it.
    if grep -qE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|CERT|certificate' \
      "$deps/npm-ci.log"; then
      echo "deploy_manifests: SKIPPED: the npm registry is not reachable from this machine" >&2
      exit 77
    fi
    exit 1
  fi
  cp "$here/package-lock.json" "$stamp"
fi

exec node "$here/validate_manifests.mjs" --deps "$deps"

#!/usr/bin/env bash
# The one command that serves ConvServe. On a fresh Debian 12 machine, as
# root, from anywhere in the repository:
#
#   bash scripts/run_server.sh [server flags...]
#
# installs the build packages (scripts/setup.sh build; only what is missing),
# configures and builds just the server and convctl (no tests, no benchmarks)
# into build-server/, then runs the server in the foreground on 0.0.0.0:50051.
# Extra arguments go to convserve_server (e.g. --compute_threads=4; see
# convserve_server --help). Ctrl-C or SIGTERM drains and stops it.
#
# The Dockerfile's build stage runs this same script with --build-only, so the
# two cannot drift.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=0
if [ "${1:-}" = "--build-only" ]; then
  build_only=1
  shift
fi

bash scripts/setup.sh build
cmake -S . -B build-server -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCONVSERVE_BUILD_TESTS=OFF -DCONVSERVE_BUILD_BENCH=OFF
cmake --build build-server -j"$(nproc)" --target convserve_server convctl

if [ "$build_only" -eq 1 ]; then
  exit 0
fi
exec build-server/server/convserve_server --listen=0.0.0.0:50051 "$@"

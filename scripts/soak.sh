#!/usr/bin/env bash
# Soaks a Release build of the server for MINUTES minutes (bench/soak.py):
# honest load mixed with bad calls, deadlines, cancellations and model
# reloads; RSS sampled every 10 s into soak-<UTC time>.csv. Extra arguments go
# to bench/soak.py (e.g. --concurrency 32, --server build-sanitize/server/convserve_server).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
  echo "usage: scripts/soak.sh MINUTES [bench/soak.py arguments]" >&2
  exit 2
fi
minutes="$1"
shift
bash scripts/setup.sh test
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target convserve_server convserve_python_stubs
exec /usr/bin/python3 bench/soak.py --duration $((minutes * 60)) --rss_interval 10 \
  --csv "soak-$(date -u +%Y%m%dT%H%M%SZ).csv" "$@"

#!/usr/bin/env bash
# Runs every libFuzzer target for MINUTES minutes each, with a corpus kept
# across runs, and prints one line per fuzzer: executions, speed, coverage and
# the outcome. The test command runs each fuzzer briefly; this is the long run.
#
# Usage: scripts/fuzz.sh MINUTES [FUZZER...]   (default: all four)
#   corpus:    fuzz/corpus/<fuzzer>/     (kept; delete it to start afresh)
#   crashes:   fuzz/artifacts/<fuzzer>/  (crash-*, leak-*, timeout-*, oom-* inputs)
#   logs:      fuzz/logs/<fuzzer>-<UTC time>.log
# FUZZ_JOBS=N runs N fuzzers at once (default 1; the machine's cores are shared).
# Exits non-zero if any fuzzer found a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh MINUTES [request_fuzzer|service_fuzzer|model_fuzzer|onnx_fuzzer ...]" >&2
  exit 2
fi
minutes="$1"
shift
fuzzers=("$@")
[ ${#fuzzers[@]} -eq 0 ] && fuzzers=(request_fuzzer service_fuzzer model_fuzzer onnx_fuzzer)

bash scripts/setup.sh test
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCONVSERVE_FUZZ=ON -DCONVSERVE_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${fuzzers[@]}"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p fuzz/logs
run_one() {
  local fuzzer="$1"
  mkdir -p "fuzz/corpus/$fuzzer" "fuzz/artifacts/$fuzzer"
  local log="fuzz/logs/$fuzzer-$stamp.log"
  local status=0
  # Known failures stay failures: replay the regression inputs first.
  if [ "$fuzzer" = request_fuzzer ]; then
    "build-fuzz/tests/fuzz/$fuzzer" tests/fuzz/regressions/* >"$log" 2>&1 || status=$?
  fi
  # The in-process gRPC fuzzers check leaks at exit only (tests/fuzz/CMakeLists.txt).
  local leaks=1
  [ "$fuzzer" != request_fuzzer ] && leaks=0
  if [ "$status" -eq 0 ]; then
    "build-fuzz/tests/fuzz/$fuzzer" "fuzz/corpus/$fuzzer" -max_total_time=$((minutes * 60)) \
      -rss_limit_mb=2048 -timeout=25 -detect_leaks=$leaks -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$fuzzer/" >>"$log" 2>&1 || status=$?
  fi
  local execs speed cov
  execs="$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)"
  speed="$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" | tail -1 || true)"
  cov="$(grep -oP 'cov: \K[0-9]+' "$log" | tail -1 || true)"
  local outcome=clean
  [ "$status" -ne 0 ] && outcome="FAILED (exit $status; see $log and fuzz/artifacts/$fuzzer/)"
  printf '%s  %-15s %s min  %12s execs  %6s exec/s  cov %6s  %s\n' "$stamp" "$fuzzer" \
    "$minutes" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$outcome" | tee "fuzz/logs/$fuzzer-$stamp.summary"
  return "$status"
}

jobs="${FUZZ_JOBS:-1}"
failed=0
pids=()
for fuzzer in "${fuzzers[@]}"; do
  run_one "$fuzzer" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
exit "$failed"

#!/usr/bin/env bash
# The test command (README, .ci/run): on a fresh Debian 12 machine, as root,
# installs what the project needs, builds everything, runs every test, then
# rebuilds the C++ tests with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs them again.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs="$(nproc)"
bash scripts/setup.sh test

echo "== Release build: all tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== ASan + UBSan build: C++ tests"
# Python tests load the libraries into an uninstrumented interpreter, so the
# sanitizer run covers the C++ (GoogleTest) suites.
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONVSERVE_SANITIZE=ON \
  -DCONVSERVE_BUILD_BENCH=OFF
cmake --build build-sanitize -j"$jobs"
# Leaks inside third-party libraries are suppressed by name (tests/sanitizer/).
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS="suppressions=$PWD/tests/sanitizer/lsan_suppressions.txt" \
  ctest --test-dir build-sanitize --output-on-failure -j"$jobs" -LE python

echo "== libFuzzer (clang, ASan + UBSan): request -> core 60 s; gRPC boundary, model loading and ONNX import 30 s each"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCONVSERVE_FUZZ=ON -DCONVSERVE_BUILD_BENCH=OFF
cmake --build build-fuzz -j"$jobs" --target request_fuzzer service_fuzzer model_fuzzer onnx_fuzzer
ctest --test-dir build-fuzz --output-on-failure -L fuzz

#!/usr/bin/env bash
# Installs the Debian 12 packages ConvServe needs, skipping those already
# installed. Used by the README's commands, by .ci/run (through test.sh) and by
# the Dockerfile, so every environment installs the same thing.
#
# Usage: scripts/setup.sh [build|runtime|test]   (default: build)
#   runtime  shared libraries the server binary needs (the Docker run stage)
#   build    runtime + compilers and -dev packages to build server and clients
#   test     build + everything the test suite and benchmarks use
set -euo pipefail

profile="${1:-build}"

# libcpp-httplib0.11: the metrics endpoint (--metrics_listen); libssl3: the TLS
# flags' certificate checks (server/tls.cc); libonnx1: ONNX model import
# (checker and shape inference).
runtime=(libgrpc++1.51 libprotobuf32 libabsl20220623 libspdlog1.10 libtbb12 libgomp1 libcpp-httplib0.11
         libssl3 libonnx1 ca-certificates)
# ocl-icd-opencl-dev: Debian's oneDNN CMake config (bench/) requires OpenCL, which
# libdnnl-dev only recommends (and recommends are not installed).
build=("${runtime[@]}" build-essential cmake ninja-build pkg-config
       libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
       libabsl-dev libspdlog-dev libtbb-dev libdnnl-dev ocl-icd-opencl-dev
       libcpp-httplib-dev nlohmann-json3-dev libssl-dev libonnx-dev
       python3 python3-grpcio python3-protobuf python3-numpy python3-grpc-tools)
# nodejs (+ npm): the offline Kubernetes manifest test (tests/deploy); nginx: the
# replicas-behind-a-proxy test (tests/integration/test_replicas.py runs its own);
# openssl: throw-away certificates for the TLS tests; prometheus: promtool checks
# the metrics exposition; python3-onnx: the ONNX import tests build and check
# models with onnx.helper and torch.onnx.export; python3-pip, -setuptools,
# -wheel, -venv: installing the Python client into a scratch environment.
test=("${build[@]}" libgtest-dev libgmock-dev libbenchmark-dev
      clang libclang-rt-14-dev python3-torch python3-pytest procps nodejs nginx
      openssl prometheus python3-onnx python3-pip python3-setuptools python3-wheel python3-venv)

case "$profile" in
  runtime) wanted=("${runtime[@]}") ;;
  build) wanted=("${build[@]}") ;;
  test) wanted=("${test[@]}") ;;
  *) echo "setup.sh: unknown profile '$profile' (expected build, runtime or test)" >&2; exit 2 ;;
esac

# Debian's npm, unless the installed node already brings its own (a node
# package from another source conflicts with Debian's npm).
if [ "$profile" = test ] && ! command -v npm >/dev/null 2>&1; then
  wanted+=(npm)
fi

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#wanted[@]} packages of profile '$profile' are installed"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: installing packages needs root (run as root or with sudo)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

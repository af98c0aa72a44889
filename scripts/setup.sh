#!/usr/bin/env bash
# Installs incnn's Debian packages where missing, then configures and builds.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  llvm-19-dev libmlir-19-dev mlir-19-tools llvm-19-tools
  libeigen3-dev libgtest-dev nlohmann-json3-dev zlib1g-dev libcpp-httplib-dev
  libcli11-dev
  libsentencepiece-dev sentencepiece
  python3 python3-numpy python3-torch libopenblas0-pthread
  clang libclang-rt-14-dev
  python3-dev pybind11-dev python3-pytest
  python3-pip python3-venv python3-setuptools python3-wheel
  chromium haproxy
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep "install ok installed" > /dev/null ||
    missing+=("$pkg")
done
# Node for the browser test (playwright-core): Debian's unless one is there.
command -v npm > /dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

echo "== configuring $BUILD_DIR"
cmake -G Ninja -S . -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DMLIR_DIR=/usr/lib/llvm-19/lib/cmake/mlir \
  -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-19/build/utils/lit/lit.py
echo "== building (this takes a few minutes on 2 cores)"
cmake --build "$BUILD_DIR"
echo "== test/browser: playwright-core from npm (the page test drives Debian's chromium)"
(cd test/browser && npm ci --no-audit --no-fund --loglevel=error) ||
  echo "warning: npm ci failed: the browser test will be skipped" >&2

#!/usr/bin/env bash
# Sets up and builds incnn (scripts/setup.sh), then runs every test with ctest:
# lit/FileCheck, GoogleTest units, differential tests and training unit tests,
# then the sanitizer builds and fuzz smoke runs (scripts/sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
scripts/setup.sh "$BUILD_DIR"
echo "== testing"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 1500
# ASan + UBSan unit tests and fuzz smoke runs, TSan concurrent sessions.
scripts/sanitize.sh

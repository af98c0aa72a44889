#!/usr/bin/env bash
# Sanitizer and fuzz runs of the runtime and the checkpoint reader (no MLIR):
#   1. clang, AddressSanitizer + UndefinedBehaviorSanitizer (no recovery: a
#      report fails the run): every runtime and checkpoint unit test, the
#      differential fuzzers included, then each libFuzzer target for
#      FUZZ_SECONDS from its checked-in seed corpus;
#   2. ThreadSanitizer: concurrent sessions over one program.
# Usage: scripts/sanitize.sh [FUZZ_SECONDS]   (default 20; CI runs the default)
# Long fuzz runs: FUZZ_SECONDS=3600 scripts/sanitize.sh, or one target by hand:
#   build-asan/runtime/incnn-document-fuzz runtime/fuzz/corpus/document
set -euo pipefail
cd "$(dirname "$0")/.."
# The Release suite runs 3000-token documents; keep ASan at a shorter length.
export INCNN_LONG_TOKENS=${INCNN_LONG_TOKENS:-1200}
FUZZ_SECONDS=${1:-${FUZZ_SECONDS:-20}}

configure() { # DIR SANITIZERS [extra cmake args]
  local dir=$1 san=$2
  shift 2
  cmake -G Ninja -S . -B "$dir" -DINCNN_BUILD_COMPILER=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DINCNN_SANITIZE="$san" "$@" >/dev/null
}

echo "== ASan + UBSan build (build-asan)"
configure build-asan address,undefined -DINCNN_FUZZ=ON
cmake --build build-asan --target incnn-runtime-tests incnn-checkpoint-tests \
  incnn-program-loader-fuzz incnn-edit-line-fuzz incnn-document-fuzz \
  incnn-safetensors-fuzz incnn-serve-api-fuzz
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== ASan + UBSan: unit and differential tests"
build-asan/runtime/incnn-runtime-tests --gtest_brief=1
build-asan/compiler/checkpoint/incnn-checkpoint-tests --gtest_brief=1

echo "== fuzzing each target for ${FUZZ_SECONDS}s from its seed corpus"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fuzz() { # TARGET CORPUS
  local name
  name=$(basename "$1")
  mkdir -p "$work/$name"
  # New inputs go to a scratch copy; the checked-in seeds stay as they are.
  "$1" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$work/$name-" \
    "$work/$name" "$2" 2>"$work/$name.log" || {
    tail -50 "$work/$name.log"
    echo "$name: FAILED (crash input kept in $work)"
    trap - EXIT
    exit 1
  }
  echo "$name: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' \
    "$work/$name.log" | grep -o '[0-9]*$') executions, no failure"
}
fuzz build-asan/runtime/incnn-program-loader-fuzz runtime/fuzz/corpus/program_loader
fuzz build-asan/runtime/incnn-edit-line-fuzz runtime/fuzz/corpus/edit_line
fuzz build-asan/runtime/incnn-document-fuzz runtime/fuzz/corpus/document
fuzz build-asan/compiler/checkpoint/incnn-safetensors-fuzz \
  compiler/checkpoint/fuzz/corpus/safetensors
fuzz build-asan/tools/incnn-serve/incnn-serve-api-fuzz \
  tools/incnn-serve/fuzz/corpus

echo "== ThreadSanitizer build (build-tsan)"
configure build-tsan thread
cmake --build build-tsan --target incnn-runtime-tests
TSAN_OPTIONS=halt_on_error=1 build-tsan/runtime/incnn-runtime-tests \
  --gtest_brief=1 --gtest_filter='Concurrency.*:Session.MatchesFromScratch*'
# ---- The Python module under ASan + UBSan ---------------------------------
# build-asan has no compiler: the module is built there when pybind11 and
# Python's headers are found (incnn.compile then raises), loaded into the
# system python3 with the ASan runtime preloaded, and stressed from two
# threads (python/tests/stress_incnn.py, 30 s) on the bundled program
# compiled by the release build. Python's own allocations go through
# malloc so that ASan sees them; its leaks at exit are not reported.
if ! cmake --build build-asan --target help | grep '^incnn:' >/dev/null; then
  echo "== Python module: pybind11 or Python headers missing, skipped"
elif [ ! -x build/bin/incnn-compile ]; then
  echo "== Python module: build/bin/incnn-compile missing (run scripts/setup.sh), skipped"
else
  echo "== ASan + UBSan: the Python module's stress test"
  cmake --build build-asan --target incnn
  build/bin/incnn-compile models/pep-vq --max-positions 256 \
    -o "$work/pep.incnn" 2>/dev/null
  PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \
    LD_PRELOAD="$(clang -print-file-name=libclang_rt.asan-x86_64.so)" \
    PYTHONPATH=build-asan/python \
    /usr/bin/python3 python/tests/stress_incnn.py "$work/pep.incnn" --seconds 30
fi
# ---- end of the Python module section -------------------------------------
echo "== sanitizers: all passed"

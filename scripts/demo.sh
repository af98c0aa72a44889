#!/usr/bin/env bash
# The main job: compile the bundled PEP-type classifier, run it on a sample
# document, then replay a short edit session incrementally, printing per edit
# the prediction, the update time, the MACs and the ratio to a from-scratch
# run (and checking every output bit against one: --verify).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
MODEL=models/pep-vq
OUT="$BUILD_DIR/pep-vq.incnn"

if [ ! -x "$BUILD_DIR/bin/incnn-compile" ]; then
  echo "incnn is not built in $BUILD_DIR: run scripts/setup.sh first" >&2
  exit 1
fi
echo "== compiling $MODEL"
"$BUILD_DIR/bin/incnn-compile" "$MODEL" -o "$OUT"
echo
echo "== $MODEL/sample.txt, then the edits in $MODEL/sample-edits.jsonl"
"$BUILD_DIR/bin/incnn-run" "$OUT" --text "$MODEL/sample.txt" \
  --edits "$MODEL/sample-edits.jsonl" --verify

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

# A long document: the model has no positions, so it reads the whole text
# (the compiler's default window for such models is 65,536 tokens).
LONG="$BUILD_DIR/pep-vq-long.txt"
for _ in $(seq 16); do cat "$MODEL/sample.txt"; echo; done >"$LONG"
echo
echo "== a long document ($(wc -c <"$LONG") bytes: sample.txt 16 times), 40 single-token edits"
"$BUILD_DIR/bin/incnn-bench" "$OUT" --synthetic "$LONG" --new-tokens document \
  --edits 40 --check-every 10 --quiet

# The writing-assistant tagger: flags words with errors; the edits fix four
# typos and type a sentence with a new one, letter by letter. Each step prints
# the flagged tokens and how many output rows changed.
TAGGER=models/typo-tagger
echo
echo "== the typo tagger on $TAGGER/sample.txt, then $TAGGER/sample-edits.jsonl"
"$BUILD_DIR/bin/incnn-compile" "$TAGGER" -o "$BUILD_DIR/typo-tagger.incnn"
"$BUILD_DIR/bin/incnn-run" "$BUILD_DIR/typo-tagger.incnn" --text "$TAGGER/sample.txt" \
  --edits "$TAGGER/sample-edits.jsonl" --verify

TRACE=../shared/data/peps/edits.jsonl.gz
if [ -f "$TRACE" ]; then
  echo
  echo "== real edit histories of two whole PEPs ($TRACE)"
  "$BUILD_DIR/bin/incnn-bench" "$OUT" --trace "$TRACE" --docs 2 \
    --check-every 20 --quiet
fi

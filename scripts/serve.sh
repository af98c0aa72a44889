#!/usr/bin/env bash
# Starts the live editor: compiles a bundled model (if needed) and runs
# incnn-serve on it with a long sample document; open the printed URL.
#
#   [MODEL=models/typo-tagger] scripts/serve.sh [BUILD_DIR] [incnn-serve options, e.g. --port 8080]
#
# MODEL: models/pep-vq (the default; the page shows its PEP-type prediction) or
# models/typo-tagger (the page underlines the words it flags).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
shift || true
MODEL=${MODEL:-models/pep-vq}
OUT="$BUILD_DIR/$(basename "$MODEL").incnn"
[ -x "$BUILD_DIR/bin/incnn-serve" ] ||
  { echo "incnn-serve is not built in $BUILD_DIR: run scripts/setup.sh first" >&2; exit 1; }
[ "$OUT" -nt "$MODEL/model.safetensors" ] || "$BUILD_DIR/bin/incnn-compile" "$MODEL" -o "$OUT"
SAMPLE="$BUILD_DIR/serve-sample.txt"
CORPUS=../shared/data/peps/corpus.jsonl.gz
if [ -f "$CORPUS" ]; then # a whole PEP body of about 10,000 tokens
  /usr/bin/python3 -c "import gzip, json, sys; d = [json.loads(l) for l in gzip.open(sys.argv[1], 'rt')]; \
print(min(d, key=lambda x: abs(len(x['body']) - 34000))['body'], end='')" "$CORPUS" > "$SAMPLE"
else
  for _ in $(seq 16); do cat "$MODEL/sample.txt"; echo; done > "$SAMPLE"
fi
exec "$BUILD_DIR/bin/incnn-serve" "$OUT" --sample "$SAMPLE" "$@"

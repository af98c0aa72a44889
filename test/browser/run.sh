#!/usr/bin/env bash
# The page test (page_test.mjs) against the bundled models (the PEP classifier,
# then the typo tagger with its underlines), in Debian's
# chromium. Exits 77 (ctest: skipped) when chromium, node or playwright-core
# (scripts/setup.sh installs them) are missing.
#
#   test/browser/run.sh BUILD_DIR [SCREENSHOT.png [TAGGER_SCREENSHOT.png]]
set -euo pipefail
cd "$(dirname "$0")"
BUILD=$(cd "$1" && pwd)
SHOT=${2:-$BUILD/browser/serve-page.png}
TAGGER_SHOT=${3:-$BUILD/browser/serve-tagger.png}
for need in node /usr/bin/chromium; do
  command -v "$need" > /dev/null || { echo "skipped: $need is not installed"; exit 77; }
done
[ -d node_modules/playwright-core ] ||
  { echo "skipped: run 'npm ci' in test/browser (scripts/setup.sh does)"; exit 77; }
mkdir -p "$BUILD/browser"
"$BUILD/bin/incnn-compile" ../../models/pep-vq -o "$BUILD/browser/pep.incnn" 2> /dev/null
SAMPLE=$BUILD/browser/sample.txt
for _ in 1 2 3 4 5 6 7 8; do cat ../../models/pep-vq/sample.txt; echo; done > "$SAMPLE"
node page_test.mjs "$BUILD/bin" "$BUILD/browser/pep.incnn" "$SAMPLE" "$SHOT"
"$BUILD/bin/incnn-compile" ../../models/typo-tagger -o "$BUILD/browser/tagger.incnn" 2> /dev/null
node page_test.mjs "$BUILD/bin" "$BUILD/browser/tagger.incnn" "$SAMPLE" "$TAGGER_SHOT"

#!/usr/bin/env bash
# Scaling study: OPT-125M geometry (12 layers, d 768, 12 heads, FFN 3072)
# with VQ after every attention block (random weights, codebooks fitted by
# k-means to the model's own activations), single-token replace / insert /
# delete at uniform positions, 128 to 2048 tokens; no positional encoding and
# learned absolute positions. Writes docs/benchmarks/scaling.csv and plots it.
# Usage: scripts/scaling-study.sh [BUILD_DIR] [SIZES (default 128,256,512,1024,2048)]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
SIZES=${2:-128,256,512,1024,2048}
OUT=docs/benchmarks
CSV=$OUT/scaling.csv
mkdir -p "$OUT"
echo "tokens,edit,update_ms,scratch_ms,wall_ratio,mac_ratio,rows_per_layer,flips_per_layer,exact,position" > "$CSV"
for position in none learned; do
  tmp=$(mktemp)
  "$BUILD_DIR/runtime/incnn-incremental-bench" --tokens "$SIZES" --position "$position" \
    --codes 64 --groups 1 --edits 12 --check-every 4 --csv "$tmp" | tee "$OUT/scaling-$position.txt"
  sed "s/\$/,$position/" "$tmp" >> "$CSV"
  rm -f "$tmp"
done
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 training/plot_scaling.py "$CSV" "$OUT/scaling.png"
else
  echo "python3-matplotlib is not installed: skipping the plot (apt-get install python3-matplotlib)"
fi

#!/usr/bin/env bash
# From-scratch forward time of an OPT-125M-shaped model (12 layers, d 768,
# 12 heads, FFN 3072, random weights): incnn's runtime next to PyTorch
# (Debian python3-torch) on the same machine and threads, in one run.
# Usage: scripts/bench-forward.sh [BUILD_DIR] [TOKENS (default 512,1024)]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
TOKENS=${2:-512,1024}
THREADS=$(nproc)
echo "== incnn ($THREADS threads)"
"$BUILD_DIR/runtime/incnn-forward-bench" --tokens "$TOKENS" --reps 3 --threads "$THREADS" | tee /tmp/incnn-forward.txt
echo "== PyTorch ($THREADS threads)"
/usr/bin/python3 training/bench_torch_forward.py --tokens "$TOKENS" --threads "$THREADS" | tee /tmp/torch-forward.txt
python3 - <<'PY'
import json, re
ours = {}
for line in open("/tmp/incnn-forward.txt"):
    m = re.match(r"tokens\s+(\d+): median ([\d.]+) s", line)
    if m:
        ours[int(m.group(1))] = float(m.group(2))
print("== ratio (PyTorch time / incnn time, medians)")
for line in open("/tmp/torch-forward.txt"):
    t = json.loads(line)
    n = t["tokens"]
    if n in ours:
        print(f"{n:6d} tokens: incnn {ours[n]:.3f} s, PyTorch {t['median_s']:.3f} s -> {t['median_s'] / ours[n]:.2f}x")
PY

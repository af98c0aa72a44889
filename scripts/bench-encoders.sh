#!/usr/bin/env bash
# What an edit costs a token tagger, by position scheme (docs/benchmarks.md, "Encoders"):
# random bert, modernbert and llama token classifiers (4 layers, d 128, VQ 1x8 after every
# attention; the llama ones with a 16-token window in every layer: rotary and bidirectional, or
# no positions and causal as the bundled tagger), 2,000 tokens, 20 single-token replacements,
# inserts and deletes each, one thread.
#   scripts/bench-encoders.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK" && cd "$WORK"
VQ=0:attn_out:1:8,1:attn_out:1:8,2:attn_out:1:8,3:attn_out:1:8
COMMON=(--task token_classifier --layers 4 --hidden 128 --ffn 256 --vocab 500 --max-pos 2048
        --seed 1 --fit-seqs 8 --fit-len 64 --kmeans-iters 4 --vq "$VQ")
declare -A MODELS=(
  [bert]="--family bert"
  [modernbert-global-every-4]="--family modernbert --window 64 --global-every 4"
  [llama-rope-bidir-window]="--family llama --position rope --attention bidirectional --window 16"
  [llama-nope-causal-window]="--family llama --position none --attention causal --window 16")
for name in bert modernbert-global-every-4 llama-rope-bidir-window llama-nope-causal-window; do
  # shellcheck disable=SC2086
  /usr/bin/python3 "$ROOT/training/make_random_model.py" "$name" ${MODELS[$name]} "${COMMON[@]}" \
    > /dev/null
  "$BUILD/bin/incnn-compile" "$name" -o "$name.incnn" 2> /dev/null
  /usr/bin/python3 - "$BUILD/bin/incnn-run" "$name" << 'PY'
import json, random, statistics, subprocess, sys
run, name = sys.argv[1:]
rng, n = random.Random(0), 2000
tokens = " ".join(str(rng.randrange(500)) for _ in range(n))
for kind in ["replace", "insert", "delete"]:
    edits = []
    for _ in range(20):
        at = rng.randrange(n - 1)
        tok = [rng.randrange(500)]
        edits.append({"op": kind, "at": at, **({"count": 1} if kind == "delete" else {"tokens": tok})})
        # Back to n tokens with an edit at the end (not measured).
        if kind == "insert":
            edits.append({"op": "delete", "at": n, "count": 1})
        if kind == "delete":
            edits.append({"op": "insert", "at": n - 1, "tokens": [1]})
    with open("edits.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in edits)
    out = subprocess.run([run, name + ".incnn", "--tokens", tokens, "--edits", "edits.jsonl",
                          "--json", "--threads", "1"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    steps = [json.loads(line) for line in out]
    measured = steps[1:] if kind == "replace" else steps[1::2]
    ratio = statistics.median(s["stats"]["macs_full"] / s["stats"]["macs"] for s in measured)
    ms = statistics.median(s["stats"]["us"] for s in measured) / 1000
    rows = statistics.median(len(s["changed_rows"]) for s in measured)
    print(f"{name:26s} {kind:8s} MACs {ratio:7.1f}x fewer  update median {ms:7.2f} ms  "
          f"(from scratch {steps[0]['stats']['us'] / 1000:6.1f} ms)  output rows changed {rows:g}")
PY
done

#!/bin/sh
# Reproduces the bundled default model models/pep-vq/ exactly (same bytes; see docs/accuracy.md).
#
#   training/train_bundled.sh [OUT_DIR]        (default: models/pep-vq)
#
# PEP type classifier (Standards Track / Informational / Process) on the PEP `body`:
# opt family, 2 layers, d=128, 4 heads, FFN 256, no positional encoding, causal attention, mean
# pooling, window = first 512 tokens, VQ (1 group x 8 codes: one codebook for the whole row and
# few codes, so that a small edit rarely flips a row's code; see docs/accuracy.md) after the
# attention output of both layers. Single-threaded and seeded: ~7-10 minutes on one core. Needs
# ../shared/data (or DATA=...) and Debian's sentencepiece CLIs (spm_train, spm_encode).
# (No --dense-cache here: the bundled command always trains from scratch.)
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-models/pep-vq}
METRICS=${METRICS:-build/pep-vq.metrics.json}
mkdir -p "$(dirname "$METRICS")"
exec /usr/bin/python3 training/train_classifier.py --task pep --out "$OUT" \
  ${DATA:+--data "$DATA"} --metrics "$METRICS" \
  --seed 0 --vocab-size 2048 --family opt --layers 2 --hidden 128 --heads 4 --ffn 256 \
  --position none --attention causal --pool mean --ctx 512 --first-prob 0.5 \
  --epochs 6 --batch 8 --lr 1e-3 --class-weight-power 0.5 \
  --vq attn_out --groups 1 --codes 8 --vq-epochs 1 --vq-lr 1e-4 --beta 0.25 --eval-every 2

#!/usr/bin/python3
"""Compares incnn's logits (incnn-compile + incnn-run --json) with the PyTorch reference
(training/incnn_ref.py) on the same tokens: max|incnn - torch| / max|torch| < 1e-4 (1e-5 for
the bert / modernbert models; token classification's rows are flattened on both sides).

Models: random opt- and llama-style checkpoints (learned / rope / no positions, causal and
bidirectional attention, LM and classifier heads, with and without VQ), random Hugging Face
bert and modernbert sequence and token classifiers (modernbert with cls and mean pooling, and
local layers whose window is shorter than the inputs) and, when ../shared/models/stories260K
exists, the real stories260K model converted from llama2.c, whose greedy continuation of BOS
must also match llama2.c's text.

VQ note: a VQ site picks the nearest codeword; when two codewords are almost equally near,
float rounding differences between the runtime and torch could pick different ones. The
random VQ models use few codes so that near-ties are unlikely; the error is measured on the
VQ output as is (no tolerance for a different code).

    /usr/bin/python3 test/tools/compare_torch.py [--only NAME,...] [--keep DIR] [--tol 1e-4]

(--tol applies to the models without a tolerance of their own.)

Prints one line per model with the measured maximum relative error; exits 1 on a failure.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "Inputs"))
import toolchain as tc  # noqa: E402

CONFIGS = [
    ("opt-learned-lm", dict(family="opt")),
    ("opt-learned-lm-vq", dict(family="opt", vq="0:attn_out:4:8,1:block_out:2:8")),
    ("opt-none-cls-vq", dict(family="opt", position="none", task="classifier",
                             vq="0:block_out:4:8")),
    ("opt-rope-bidir-cls-mean", dict(family="opt", position="rope", attention="bidirectional",
                                     task="classifier", pool="mean", act="gelu")),
    ("opt-gelu-new", dict(family="opt", position="none", act="gelu_new",
                          vq="0:attn_out:2:8")),
    # Gated activations (fc1 gives [u | g]): ModernBERT's GeGLU, and SwiGLU.
    ("opt-geglu-bidir-cls", dict(family="opt", position="rope", attention="bidirectional",
                                 task="classifier", pool="mean", act="geglu",
                                 vq="0:attn_out:2:8")),
    ("opt-swiglu-lm", dict(family="opt", position="none", act="swiglu")),
    ("llama-rope-lm-gqa", dict(family="llama", kv_heads=2)),
    ("llama-rope-lm-vq", dict(family="llama", kv_heads=2, vq="1:attn_out:4:8")),
    ("llama-none-lm", dict(family="llama", position="none")),
    ("llama-rope-bidir-cls-vq", dict(family="llama", position="rope",
                                     attention="bidirectional", task="classifier",
                                     vq="0:attn_out:2:8,1:block_out:4:8")),
    # Sliding windows, one layer local and one global (ModernBERT-style).
    ("opt-none-window-cls", dict(family="opt", position="none", task="classifier",
                                 pool="mean", window=5, global_every=2, layers=3,
                                 vq="1:attn_out:2:8")),
    ("llama-rope-window-bidir-lm", dict(family="llama", kv_heads=2, attention="bidirectional",
                                        window=4)),
    # LlamaForTokenClassification made bidirectional with local windows (the bundled tagger's
    # shape).
    ("llama-tok-window-bidir-vq", dict(family="llama", task="token_classifier",
                                       attention="bidirectional", window=6,
                                       vq="0:attn_out:2:8")),
    # Hugging Face encoders (HF config and tensor names), with a tolerance of their own.
    ("bert-cls", dict(family="bert", task="classifier"), 1e-5),
    ("bert-tok-vq", dict(family="bert", task="token_classifier",
                         vq="0:attn_out:2:8,1:block_out:4:8"), 1e-5),
    ("modernbert-cls", dict(family="modernbert", task="classifier", pool="cls"), 1e-5),
    ("modernbert-cls-mean", dict(family="modernbert", task="classifier", pool="mean"), 1e-5),
    # local_attention 8 (keys |i - j| <= 4) in layers 1 and 2, inputs up to 64 tokens
    ("modernbert-tok-window-vq", dict(family="modernbert", task="token_classifier", layers=3,
                                      window=8, global_every=3,
                                      vq="1:attn_out:2:8,2:block_out:4:8"), 1e-5),
]

STORIES_TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play "
                "outside in the park. One day, she saw a big, red ball.")


def compare(ref, model_dir, prog, seqs):
    """Max relative error over the token sequences (token classification: all rows)."""
    model = ref.load_model(model_dir)
    worst = 0.0
    for toks in seqs:
        _, lines, _ = tc.run(prog, tokens=toks, extra=["--threads", "1"])
        got = np.asarray(lines[0]["output"], dtype=np.float64).ravel()
        expected = ref.forward(model, toks).astype(np.float64).ravel()
        worst = max(worst, tc.rel_err(got, expected))
    return worst


def stories(ref, work, tol):
    """Returns a list of failure messages (empty: passed)."""
    if not os.path.isdir(tc.STORIES):
        print("skip stories260K: %s is missing" % tc.STORIES)
        return []
    sys.path.insert(0, tc.TRAINING)
    import llama2c_to_hf as l2h
    d = os.path.join(work, "stories260K")
    l2h.convert(os.path.join(tc.STORIES, "stories260K.bin"),
                os.path.join(tc.STORIES, "tok512.bin"), d)
    prog = tc.compile_model(d, d + ".incnn")
    rng = random.Random(7)
    seqs = [[1], [1, 403, 407, 261, 378], [1] + [rng.randrange(3, 512) for _ in range(100)]]
    err = compare(ref, d, prog, seqs)
    failures = []
    print("%-28s max rel err %.3g" % ("stories260K", err))
    if not err < tol:
        failures.append("stories260K: max relative error %.3g" % err)
    _, lines, _ = tc.run(prog, tokens=[1], generate=60)
    text = lines[-1].get("text", "")
    ids = lines[-1]["generated"]
    expected_ids = ref.generate(ref.load_model(d), [1], 60, stop={2})
    if ids != expected_ids:
        failures.append("stories260K: greedy ids differ from the reference: %s vs %s"
                        % (ids, expected_ids))
    if not text.startswith(STORIES_TEXT):
        failures.append("stories260K: greedy text %r does not start with %r"
                        % (text, STORIES_TEXT))
    print("%-28s greedy 60: %r" % ("stories260K", text))
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--keep", default=None, help="keep models in this directory")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args(argv)
    only = set(a.only.split(",")) if a.only else None
    _, ref = tc.training_modules()
    work = a.keep or tempfile.mkdtemp(prefix="incnn_compare_torch_")
    os.makedirs(work, exist_ok=True)
    failures = []
    try:
        for i, (name, kw, *tol) in enumerate(CONFIGS):
            if only and name not in only:
                continue
            tol = tol[0] if tol else a.tol
            d = os.path.join(work, name)
            cfg = tc.make_model(d, seed=100 + i, **kw)
            prog = tc.compile_model(d, d + ".incnn")
            rng = random.Random(i)
            vocab, max_pos = cfg["vocab_size"], cfg["max_position_embeddings"]
            seqs = [[rng.randrange(vocab) for _ in range(n)] for n in (1, 7, 23, max_pos)]
            err = compare(ref, d, prog, seqs)
            print("%-28s max rel err %.3g" % (name, err))
            if not err < tol:
                failures.append("%s: max relative error %.3g" % (name, err))
        if not only or "stories260K" in only:
            failures += stories(ref, work, a.tol)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

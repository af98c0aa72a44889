"""Helpers for the whole-toolchain tests: make random checkpoints, compile them, run incnn-run.

Tools are found on PATH (lit puts build/bin first) or in $INCNN_BIN.
"""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
TRAINING = os.path.join(ROOT, "training")
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
STORIES = os.path.join(SHARED, "models", "stories260K")


def tool(name):
    d = os.environ.get("INCNN_BIN")
    if d:
        return os.path.join(d, name)
    found = shutil.which(name)
    if found:
        return found
    return os.path.join(ROOT, "build", "bin", name)


def training_modules():
    """Imports training/ (needs Debian's torch: run under /usr/bin/python3)."""
    if TRAINING not in sys.path:
        sys.path.insert(0, TRAINING)
    import incnn_ref  # noqa: F401
    import make_random_model  # noqa: F401
    import torch
    torch.set_num_threads(1)
    return sys.modules["make_random_model"], sys.modules["incnn_ref"]


def make_model(out_dir, **kw):
    """Random checkpoint in out_dir (make_random_model flags as keywords)."""
    mrm, _ = training_modules()
    kw.setdefault("fit_seqs", 8)
    kw.setdefault("fit_len", 24)
    kw.setdefault("kmeans_iters", 4)
    return mrm.make(out_dir, **kw)


def compile_model(model_dir, out_path, extra=()):
    r = subprocess.run([tool("incnn-compile"), model_dir, "-o", out_path] + list(extra),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("incnn-compile %s failed (%d): %s"
                           % (model_dir, r.returncode, r.stderr))
    return out_path


def run(program, tokens=None, text=None, edits=None, verify=False, generate=0,
        extra=(), check=True):
    """Runs incnn-run --json; returns (returncode, [parsed lines], stderr)."""
    cmd = [tool("incnn-run"), program, "--json"]
    if tokens is not None:
        cmd += ["--tokens", " ".join(str(t) for t in tokens)]
    if text is not None:
        cmd += ["--text", text]
    if edits is not None:
        cmd += ["--edits", edits]
    if verify:
        cmd.append("--verify")
    if generate:
        cmd += ["--generate", str(generate)]
    cmd += list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr))
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return r.returncode, lines, r.stderr


def rel_err(a, b):
    """max|a - b| / max|b| over two equal-length float lists."""
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


# A tiny sentencepiece BPE vocabulary for tokenizer tests that must not depend on ../shared:
# <unk> <s> </s>, the 256 byte-fallback pieces, then these pieces ("_" = word start).
PIECES = (["\u2581"] + list("abcdefghijklmnopqrstuvwxyz.,")
          + ["\u2581t", "th", "\u2581th", "he", "\u2581the", "in", "er", "an", "\u2581a",
             "on", "\u2581in", "re", "at", "\u2581o", "\u2581s", "\u2581w", "ing", "en"])
TINY_VOCAB = 3 + 256 + len(PIECES)


def write_tiny_tokenizer(model_dir):
    """Adds tokenizer.model (TINY_VOCAB pieces) to a checkpoint directory."""
    if TRAINING not in sys.path:
        sys.path.insert(0, TRAINING)
    import llama2c_to_hf as l2h
    toks = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    toks += [(("<0x%02X>" % b).encode(), 0.0) for b in range(256)]
    # Later (longer) merges score lower, single characters lowest of all.
    toks += [(p.replace("\u2581", " ").encode(), -float(i if len(p) > 1 else 1000 + i))
             for i, p in enumerate(PIECES)]
    with open(os.path.join(model_dir, "tokenizer.model"), "wb") as f:
        f.write(l2h.tokenizer_model_bytes(toks))

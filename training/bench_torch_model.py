#!/usr/bin/env python3
"""Times a PyTorch forward pass (training/incnn_ref.py, Debian's torch) of a
checkpoint on random tokens; prints "median_s SECONDS". Used by incnn-bench
--torch to compare with incnn on the same weights."""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = incnn_ref.load_model(a.model_dir)
    vocab = int(model.config["vocab_size"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (a.tokens,), generator=g).tolist()
    times = []
    for _ in range(a.reps + 1):
        t0 = time.perf_counter()
        incnn_ref.forward(model, ids)
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    print("median_s %.6f" % times[len(times) // 2])


if __name__ == "__main__":
    main()

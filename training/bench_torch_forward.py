#!/usr/bin/env python3
"""PyTorch baseline for the from-scratch forward benchmark.

Times a full forward pass of an OPT-125M-shaped decoder (pre-LayerNorm, ReLU
MLP, causal attention, learned positions; random weights) at the given token
counts, with the given number of threads, and prints one JSON line per size:
{"tokens": n, "median_s": ..., "min_s": ..., "threads": t}.

Run with Debian's torch: /usr/bin/python3 training/bench_torch_forward.py
"""
import argparse
import json
import time

import torch


class Block(torch.nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(d)
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d)
        self.v = torch.nn.Linear(d, d)
        self.o = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.fc1 = torch.nn.Linear(d, ffn)
        self.fc2 = torch.nn.Linear(ffn, d)

    def forward(self, x, mask):
        n, d = x.shape
        hd = d // self.heads
        a = self.ln1(x)
        q = self.q(a).view(n, self.heads, hd).transpose(0, 1) * hd ** -0.5
        k = self.k(a).view(n, self.heads, hd).transpose(0, 1)
        v = self.v(a).view(n, self.heads, hd).transpose(0, 1)
        att = torch.softmax(q @ k.transpose(1, 2) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(n, d)
        h = x + self.o(o)
        return h + self.fc2(torch.relu(self.fc1(self.ln2(h))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", default="512,1024")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=50272)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sizes = [int(s) for s in a.tokens.split(",")]
    emb = torch.nn.Embedding(a.vocab, a.dim)
    pos = torch.nn.Embedding(max(sizes) + 2, a.dim)
    blocks = torch.nn.ModuleList(Block(a.dim, a.heads, a.ffn) for _ in range(a.layers))
    final = torch.nn.LayerNorm(a.dim)
    head = torch.nn.Linear(a.dim, 3, bias=False)
    with torch.no_grad():
        for n in sizes:
            tokens = torch.randint(0, a.vocab, (n,))
            mask = torch.full((n, n), float("-inf")).triu(1)
            times = []
            for _ in range(a.reps + 1):
                t0 = time.perf_counter()
                x = emb(tokens) + pos(torch.arange(n) + 2)
                for b in blocks:
                    x = b(x, mask)
                head(final(x)[-1])
                times.append(time.perf_counter() - t0)
            times = sorted(times[1:])  # first run warms up
            print(json.dumps({"tokens": n, "median_s": times[len(times) // 2],
                              "min_s": times[0], "threads": a.threads}), flush=True)


if __name__ == "__main__":
    main()

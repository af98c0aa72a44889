#!/usr/bin/python3
"""How much looser a changed key's softmax weight gets when it is bounded for a whole block of
rows at once (from the block's box of queries) instead of row by row: the question behind
dismissing blocks of rows without visiting them (docs/benchmarks.md, section 7).

    /usr/bin/python3 scripts/block_bound_study.py [--model models/pep-vq]
        [--program build/pep-vq.incnn] [--text FILE] [--edits 3] [--blocks 8,64,512]

Runs the PyTorch reference (training/incnn_ref.py) on the text, tokenized with the program's
tokenizer (the Python module in build/python), and takes each attention layer's queries and
keys. For an edit at a random position in the document's second quarter, whose new key is
another row's key, every later row gets the key's weight exp(s - M) / L (M the row's largest
score, L its softmax sum; the worst head). Blocks of B consecutive rows get the bound
exp(box score - min M) / min L, where the box score is sum over c of
max(qmin_c k_c, qmax_c k_c). Prints, per layer and edit: the rows' median and p99 weight, and
per B the block bound over the block's worst row (median, p90) and the share of blocks and of
rows whose bound is at most 1e-3.
"""

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "training"))
sys.path.insert(0, os.path.join(ROOT, "build", "python"))
import incnn  # noqa: E402
import incnn_ref as R  # noqa: E402


def queries_and_keys(model, layer, x, n):
    """The layer's scaled queries and keys, [H, n, hd] (OPT family, no rotary positions)."""
    H, hd = model.r["heads"], model.r["head_dim"]
    p = model.prefix() + "layers.%d.self_attn." % layer
    x = R._norm(model, model.prefix() + "layers.%d.self_attn_layer_norm" % layer, x)
    q = R.linear(x, model.get(p + "q_proj.weight"), model.get(p + "q_proj.bias", False))
    k = R.linear(x, model.get(p + "k_proj.weight"), model.get(p + "k_proj.bias", False))
    q = q * hd ** -0.5
    return q.view(n, H, hd).transpose(0, 1), k.view(n, H, hd).transpose(0, 1)


def row_softmax_facts(q, k, n):
    """Per head and row: the largest causal score M and the softmax sum L at M."""
    H = q.shape[0]
    M, L = torch.empty(H, n), torch.empty(H, n)
    for a in range(0, n, 2048):
        b = min(n, a + 2048)
        s = q[:, a:b] @ k[:, :b].transpose(1, 2)
        s = s.masked_fill(torch.arange(b)[None, :] > torch.arange(a, b)[:, None], float("-inf"))
        M[:, a:b] = s.max(-1).values
        L[:, a:b] = torch.exp(s - M[:, a:b, None]).sum(-1)
    return M, L


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "pep-vq"))
    ap.add_argument("--program", default=os.path.join(ROOT, "build", "pep-vq.incnn"))
    ap.add_argument("--text", default=os.path.join(ROOT, "models", "pep-vq", "sample.txt"))
    ap.add_argument("--edits", type=int, default=3)
    ap.add_argument("--blocks", default="8,64,512")
    a = ap.parse_args()
    model = R.load_model(a.model)
    if model.r["family"] != "opt" or model.r["position"] != "none":
        sys.exit("block_bound_study: an OPT-family model without positions is expected")
    ids = incnn.Program.load(a.program).tokenizer.encode(open(a.text).read())
    n = len(ids)
    capture = {}
    R.run(model, ids, capture=capture)
    inputs = [model.get(model.prefix() + "embed_tokens.weight")[torch.as_tensor(ids)]]
    inputs += [capture[(li, "block_out")] for li in range(model.r["layers"] - 1)]
    torch.manual_seed(0)
    print("%d tokens" % n)
    for layer, x in enumerate(inputs):
        q, k = queries_and_keys(model, layer, x, n)
        M, L = row_softmax_facts(q, k, n)
        for _ in range(a.edits):
            at = int(torch.randint(n // 4, n // 2, (1,)))
            key = k[:, int(torch.randint(0, n, (1,)))]
            rows = torch.arange(at, n)
            weight = (torch.exp((q[:, rows] * key[:, None, :]).sum(-1) - M[:, rows]) /
                      L[:, rows]).max(0).values
            line = ["layer %d, edit at %d: row weight median %.1e, p99 %.1e" %
                    (layer, at, weight.median(), weight.quantile(0.99))]
            for B in (int(b) for b in a.blocks.split(",")):
                nb = len(rows) // B
                if nb == 0:
                    continue  # fewer rows than one block
                span = rows[:nb * B]
                qb = q[:, span].reshape(q.shape[0], nb, B, -1)
                box = torch.maximum(qb.min(2).values * key[:, None, :],
                                    qb.max(2).values * key[:, None, :]).sum(-1)
                bound = (torch.exp(box - M[:, span].reshape(-1, nb, B).min(-1).values) /
                         L[:, span].reshape(-1, nb, B).min(-1).values).max(0).values
                worst = weight[:nb * B].reshape(nb, B).max(-1).values
                ratio = bound / worst
                line.append("B=%d: bound / worst row median %.0fx, p90 %.0fx; <= 1e-3: %.0f%% of "
                            "blocks (%.0f%% of rows)" %
                            (B, ratio.median(), ratio.quantile(0.9),
                             100 * (bound <= 1e-3).float().mean(),
                             100 * (weight <= 1e-3).float().mean()))
            print("; ".join(line))


if __name__ == "__main__":
    main()

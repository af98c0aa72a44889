#!/usr/bin/python3
"""Measure how often VQ codes flip under small token edits (the property that makes incremental
inference cheap), with the reference forward (incnn_ref).

    /usr/bin/python3 training/vq_flips.py MODEL_DIR --task pep [--docs 40 --edits 5 --seed 0]
    /usr/bin/python3 training/vq_flips.py MODEL_DIR --seqs data.json:eval_t08 [--docs 40 ...]

``--seqs FILE:KEY`` takes token sequences (a JSON list, or the list under KEY of a JSON object,
e.g. the ``data.json`` written by train_stories_vq.py) instead of a task's test documents; their
first token (BOS) is never edited.

For each of the first ``--docs`` test documents (first ``max_position_embeddings`` tokens, as the
runtime sees them) and ``--edits`` random single-token edits of each kind (``replace``: one token
becomes a random other id; ``insert``: one random id inserted, the window then re-truncated;
``delete``: one token removed), it runs the model before and after and counts, per VQ site:

  * ``rows``: the rows at or after the edit (the only rows a causal model can change);
  * ``changed_pre``: of those, rows whose pre-VQ activation changed at all (what a dense model
    would have to propagate);
  * ``flipped``: rows whose code (any group) differs; with insert/delete the comparison aligns
    the old row ``i`` with the new row ``i +/- 1`` after the edit point;
  * ``flipped_groups``: group codes that differ (out of ``rows * G``);
and whether the predicted label changed. Prints a table and writes ``--json``.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ref as ref  # noqa: E402
import textdata  # noqa: E402


def capture(model, ids):
    cap = {}
    z = ref.run(model, ids, capture=cap)
    return cap, int(np.argmax(ref.head(model, z).numpy()))


def main(argv=None):
    ap = argparse.ArgumentParser(description="VQ code flips under single-token edits")
    ap.add_argument("model_dir")
    ap.add_argument("--task", choices=["pep", "foods"], default="pep")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seqs", default=None, metavar="FILE[:KEY]",
                    help="token sequences (JSON) instead of the task's test documents")
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--edits", type=int, default=5, help="edits of each kind per document")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.RandomState(a.seed)
    model = ref.load_model(a.model_dir)
    r = model.r
    ctx = r["max_pos"]
    if a.seqs:
        path, _, key = a.seqs.partition(":")
        with open(path) as f:
            seqs = json.load(f)
        if key:
            seqs = seqs[key]
        docs = [list(map(int, x)) for x in seqs[:a.docs]]
        first = 1  # keep BOS
    else:
        _, _, test = textdata.load_task(a.task, a.data)
        docs = textdata.encode(os.path.join(a.model_dir, "tokenizer.model"),
                               [t for t, _ in test[:a.docs]])
        first = 0
    sites = [(int(s["layer"]), s["site"]) for s in r["vq"]]
    if not sites:
        raise SystemExit("model has no VQ sites")
    # plain vocabulary ids only (skip control and byte pieces) for the inserted/replacing token
    V = r["vocab"]
    stats = {}
    for kind in ("replace", "insert", "delete"):
        stats[kind] = {"edits": 0, "label_changed": 0,
                       "sites": {"%d.%s" % s: {"rows": 0, "changed_pre": 0, "flipped": 0,
                                               "flipped_groups": 0, "groups": 0}
                                 for s in sites}}
    for doc in docs:
        base = doc[:ctx]
        n = len(base)
        cap0, y0 = capture(model, base)
        for kind in ("replace", "insert", "delete"):
            for _ in range(a.edits):
                p = rng.randint(first, n)
                tok = int(rng.randint(259, V))
                if kind == "replace":
                    while tok == base[p]:
                        tok = int(rng.randint(259, V))
                    new = base[:p] + [tok] + base[p + 1:]
                elif kind == "insert":
                    new = (doc[:p] + [tok] + doc[p:])[:ctx]
                else:
                    if n < first + 2:
                        continue
                    new = (doc[:p] + doc[p + 1:])[:ctx]
                cap1, y1 = capture(model, new)
                st = stats[kind]
                st["edits"] += 1
                st["label_changed"] += int(y0 != y1)
                for s in sites:
                    c0 = cap0[("codes",) + s].numpy()
                    c1 = cap1[("codes",) + s].numpy()
                    a0 = cap0[s].numpy()
                    a1 = cap1[s].numpy()
                    # align rows after the edit point: old row i <-> new row j
                    if kind == "replace":
                        old_rows = np.arange(p, n)
                        new_rows = old_rows
                    elif kind == "insert":
                        new_rows = np.arange(p + 1, len(new))
                        old_rows = new_rows - 1
                    else:
                        new_rows = np.arange(p, len(new))
                        old_rows = new_rows + 1
                        keep = old_rows < n
                        new_rows, old_rows = new_rows[keep], old_rows[keep]
                    d = st["sites"]["%d.%s" % s]
                    d["rows"] += len(new_rows)
                    d["changed_pre"] += int((a0[old_rows] != a1[new_rows]).any(1).sum())
                    diff = c0[old_rows] != c1[new_rows]
                    d["flipped"] += int(diff.any(1).sum())
                    d["flipped_groups"] += int(diff.sum())
                    d["groups"] += int(diff.size)
    print("model %s: window %d tokens, %d documents, %d edits of each kind" % (
        a.model_dir, ctx, len(docs), a.edits * len(docs)))
    print("%-8s %-12s %10s %12s %10s %12s" % ("edit", "site", "rows", "pre-VQ chg", "flipped",
                                               "groups flip"))
    for kind, st in stats.items():
        for name, d in st["sites"].items():
            rows = max(1, d["rows"])
            print("%-8s %-12s %10d %11.1f%% %9.2f%% %11.2f%%" % (
                kind, name, d["rows"], 100.0 * d["changed_pre"] / rows,
                100.0 * d["flipped"] / rows, 100.0 * d["flipped_groups"] / max(1, d["groups"])))
        print("%-8s label changed in %d of %d edits" % (kind, st["label_changed"], st["edits"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model_dir, "window": ctx, "docs": len(docs), "stats": stats},
                      f, indent=1, sort_keys=True)
            f.write("\n")
    return stats


if __name__ == "__main__":
    main()

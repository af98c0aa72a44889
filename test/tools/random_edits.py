#!/usr/bin/python3
"""Differential test of incremental updates through the whole toolchain.

Makes random checkpoints (opt and llama; learned, rope and no positions; causal and
bidirectional attention; LM and classifier heads; with VQ), compiles each with incnn-compile
(default, --no-vq-cutoff and --cache-plan=all programs, one per script in turn),
writes random edit scripts (single and batched replace / insert / delete) and runs
`incnn-run --edits SCRIPT --verify`, which fails on any bit of difference between the
incremental session and a from-scratch evaluation.

    /usr/bin/python3 test/tools/random_edits.py            # CI: a few models, short scripts
    /usr/bin/python3 test/tools/random_edits.py --long     # many seeds, long scripts
    /usr/bin/python3 test/tools/random_edits.py --seeds 20 --edits 200 --keep DIR

Needs Debian's torch (make_random_model) and the built tools (PATH, $INCNN_BIN or build/bin).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "Inputs"))
import toolchain as tc  # noqa: E402

# (name, make_random_model keywords). Every config has VQ so that code flips and cutoffs
# are exercised; max_pos is small so that documents fill the context window.
CONFIGS = [
    ("opt-learned-causal-lm", dict(family="opt", position="learned",
                                   vq="0:attn_out:4:16,1:block_out:2:8")),
    ("opt-none-causal-cls", dict(family="opt", position="none", task="classifier",
                                 pool="last", act="gelu_new", vq="1:attn_out:2:8")),
    ("opt-rope-bidir-cls-mean", dict(family="opt", position="rope", attention="bidirectional",
                                     task="classifier", pool="mean", act="gelu",
                                     vq="0:block_out:4:16")),
    ("llama-rope-causal-lm", dict(family="llama", position="rope", kv_heads=2,
                                  vq="0:attn_out:4:16,1:block_out:4:8")),
    ("llama-none-causal-lm", dict(family="llama", position="none",
                                  vq="0:block_out:2:8")),
    ("llama-rope-bidir-cls", dict(family="llama", position="rope",
                                  attention="bidirectional", task="classifier",
                                  vq="1:attn_out:4:8")),
    # Sliding-window attention, alone and alternating with global layers.
    ("opt-none-window-lm", dict(family="opt", position="none", window=6,
                                vq="0:attn_out:4:16")),
    ("llama-none-window-bidir-cls", dict(family="llama", position="none",
                                         attention="bidirectional", window=5, global_every=2,
                                         layers=3, task="classifier", vq="1:attn_out:2:8")),
    # Text edits ({"op":"text"}) through a tokenizer.
    ("opt-learned-lm-text", dict(family="opt", position="learned", vq="0:attn_out:4:16",
                                 text=True)),
    ("llama-none-cls-text", dict(family="llama", position="none", task="classifier",
                                 vq="1:block_out:4:8", text=True)),
    # Hugging Face encoders: bidirectional, post-LN BERT with learned positions (an insert
    # moves every later row) and ModernBERT with rotary local / global layers; both heads.
    # A token classifier's "changed_rows" are checked against consecutive outputs.
    ("llama-window-bidir-tok", dict(family="llama", task="token_classifier",
                                    attention="bidirectional", window=6,
                                    vq="0:attn_out:2:8,1:attn_out:2:8")),
    ("bert-tok", dict(family="bert", task="token_classifier",
                      vq="0:attn_out:2:8,1:block_out:4:8")),
    ("bert-cls", dict(family="bert", task="classifier", vq="1:attn_out:4:8")),
    ("modernbert-window-tok", dict(family="modernbert", task="token_classifier", layers=3,
                                   window=8, global_every=3,
                                   vq="0:attn_out:4:16,2:block_out:4:8")),
    ("modernbert-cls-mean", dict(family="modernbert", task="classifier", pool="mean",
                                 vq="1:block_out:2:8")),
]

WORDS = ["the", "cat", "in", "a", "hat", "sat", "on", "mat", "there", "\u00fcber", "caf\u00e9",
         "\u2603", "at", "ring", ".", ",", "\n"]


# incnn-compile variants, one per script in turn.
VARIANTS = [("default", []), ("no-vq-cutoff", ["--no-vq-cutoff"]),
            ("cache-plan=all", ["--cache-plan=all"])]


def random_edit(rng, n, vocab, max_pos):
    """One valid edit on a document of n tokens: (json object, new length)."""
    ops = ["replace"]
    if n < max_pos:
        ops.append("insert")
    if n > 1:
        ops.append("delete")
    op = rng.choice(ops)
    # Mostly short edits, sometimes long ones.
    span = 1 if rng.random() < 0.6 else rng.randint(1, 8)
    if op == "replace":
        k = min(span, n)
        at = rng.randint(0, n - k)
        return {"op": op, "at": at, "tokens": [rng.randrange(vocab) for _ in range(k)]}, n
    if op == "insert":
        k = min(span, max_pos - n)
        at = rng.randint(0, n)
        return {"op": op, "at": at, "tokens": [rng.randrange(vocab) for _ in range(k)]}, n + k
    k = min(span, n - 1)
    at = rng.randint(0, n - k)
    return {"op": op, "at": at, "count": k}, n - k


def random_text(rng, words):
    return "".join(rng.choice(WORDS) + rng.choice([" ", " ", ""]) for _ in range(words))


def char_boundaries(b):
    return [i for i in range(len(b) + 1) if i == len(b) or (b[i] & 0xC0) != 0x80]


def text_script(rng, doc, count):
    """`count` text edit lines on the UTF-8 document `doc` (bytes), some batched."""
    lines = []
    for _ in range(count):
        batch = []
        for _ in range(rng.randint(2, 3) if rng.random() < 0.2 else 1):
            cuts = char_boundaries(doc)
            start = rng.choice(cuts)
            end = rng.choice([c for c in cuts if start <= c <= start + 12])
            new = random_text(rng, rng.randint(0, 2)) if rng.random() < 0.8 else ""
            if len(doc) - (end - start) + len(new.encode()) > 150:
                new = ""
            if len(doc) - (end - start) + len(new.encode()) == 0:
                new = "a"  # a classifier without BOS needs a token
            batch.append({"op": "text", "start": start, "end": end, "text": new})
            doc = doc[:start] + new.encode() + doc[end:]
        lines.append(json.dumps(batch if len(batch) > 1 else batch[0]))
    return lines


def edit_script(rng, n, vocab, max_pos, count):
    """`count` lines; about a quarter are batches of 2-4 edits."""
    lines = []
    for _ in range(count):
        if rng.random() < 0.25:
            batch = []
            for _ in range(rng.randint(2, 4)):
                e, n = random_edit(rng, n, vocab, max_pos)
                batch.append(e)
            lines.append(json.dumps(batch))
        else:
            e, n = random_edit(rng, n, vocab, max_pos)
            lines.append(json.dumps(e))
    return lines


def replay(lines, tokens):
    """Per edit line: for each new row, the old row it came from, or -1 where its token
    is new or different (as the runtime's edit plan has it: a replacement keeps the
    row's origin)."""
    origins = []
    for line in lines:
        batch = json.loads(line)
        rows = list(range(len(tokens)))
        new = list(tokens)
        for e in batch if isinstance(batch, list) else [batch]:
            at = e["at"]
            if e["op"] == "delete":
                del rows[at:at + e["count"]]
                del new[at:at + e["count"]]
            elif e["op"] == "insert":
                rows[at:at] = [-1] * len(e["tokens"])
                new[at:at] = e["tokens"]
            else:
                new[at:at + len(e["tokens"])] = e["tokens"]
        origins.append([r if r >= 0 and tokens[r] == t else -1 for r, t in zip(rows, new)])
        tokens = new
    return origins


def check_changed_rows(steps, origins):
    """A token classifier's changed_rows: every other row kept its token and its output
    bit for bit, and a listed row was edited or its output changed. Returns an error."""
    for k, (prev, cur, origin) in enumerate(zip(steps, steps[1:], origins), 1):
        changed = set(cur["changed_rows"])
        if sorted(changed) != cur["changed_rows"]:
            return "step %d: changed_rows not sorted and unique" % k
        for r, old in enumerate(origin):
            same = old >= 0 and prev["output"][old] == cur["output"][r]
            if r not in changed and not same:
                return "step %d: row %d changed but is not in changed_rows" % (k, r)
            if r in changed and same:
                return "step %d: row %d is in changed_rows but did not change" % (k, r)
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="many seeds and long scripts")
    ap.add_argument("--seeds", type=int, default=None, help="models per config")
    ap.add_argument("--edits", type=int, default=None, help="edit lines per script")
    ap.add_argument("--scripts", type=int, default=None, help="scripts per model")
    ap.add_argument("--configs", default="", help="comma-separated config names (default all)")
    ap.add_argument("--keep", default=None, help="keep models and scripts in this directory")
    a = ap.parse_args(argv)
    seeds = a.seeds or (5 if a.long else 1)
    edits = a.edits or (300 if a.long else 40)
    scripts = a.scripts or (4 if a.long else 2)
    configs = [c for c in CONFIGS if not a.configs or c[0] in a.configs.split(",")]
    if not configs:
        ap.error("no config matches --configs")

    work = a.keep or tempfile.mkdtemp(prefix="incnn_random_edits_")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    failures = 0
    runs = 0
    try:
        for name, kw in configs:
            for seed in range(seeds):
                d = os.path.join(work, "%s-%d" % (name, seed))
                kw = dict(kw)
                text = kw.pop("text", False)
                if text:
                    kw["vocab"] = tc.TINY_VOCAB
                cfg = tc.make_model(d, seed=seed, max_pos=40, **kw)
                if text:
                    tc.write_tiny_tokenizer(d)
                # Compiler variants: the runtime runs whatever program it is given.
                progs = [(v, tc.compile_model(d, d + "-%d.incnn" % i, flags))
                         for i, (v, flags) in enumerate(VARIANTS)]
                vocab, max_pos = cfg["vocab_size"], cfg["max_position_embeddings"]
                for s in range(scripts):
                    rng = random.Random(seed * 1000 + s)
                    path = os.path.join(work, "%s-%d-%d.jsonl" % (name, seed, s))
                    if text:
                        doc = random_text(rng, rng.randint(1, 12)) or "x"
                        lines = text_script(rng, doc.encode(), edits)
                        doc_path = path[:-len(".jsonl")] + ".txt"
                        with open(doc_path, "w") as f:
                            f.write(doc)
                        source = ["--text", doc_path]
                    else:
                        n = rng.randint(1, max_pos)
                        tokens = [rng.randrange(vocab) for _ in range(n)]
                        lines = edit_script(rng, n, vocab, max_pos, edits)
                        source = ["--tokens", " ".join(map(str, tokens))]
                    with open(path, "w") as f:
                        f.write("\n".join(lines) + "\n")
                    variant, prog = progs[s % len(progs)]
                    cmd = [tc.tool("incnn-run"), prog] + source + [
                        "--edits", path, "--verify", "--json", "--threads", str(1 + s % 2)]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    runs += 1
                    steps = len(r.stdout.splitlines())
                    # Text documents may exceed the window: truncation warnings are fine.
                    parsed = [json.loads(x) for x in r.stdout.splitlines()]
                    if (r.returncode == 0 and not text and parsed
                            and "changed_rows" in parsed[0]):
                        error = check_changed_rows(parsed, replay(lines, tokens))
                        if error:
                            r = subprocess.CompletedProcess(cmd, 1, r.stdout, error)
                    if r.returncode != 0 or steps != edits + 1:
                        failures += 1
                        print("FAIL %s seed %d script %d (exit %d, %d steps): %s\n  reproduce: %s"
                              % (name, seed, s, r.returncode, steps, r.stderr.strip(),
                                 " ".join("'%s'" % c if " " in c else c for c in cmd)))
                        a.keep = a.keep or work  # keep the evidence
                    else:
                        flips = sum(sum(json.loads(x)["stats"]["code_flips"])
                                    for x in r.stdout.splitlines()[1:])
                        print("ok   %s seed %d script %d: %d edits verified, %d code flips (%s)"
                              % (name, seed, s, edits, flips, variant))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("%d/%d scripts passed in %.1f s%s" % (runs - failures, runs, time.time() - t0,
                                                "; files kept in " + work if a.keep else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

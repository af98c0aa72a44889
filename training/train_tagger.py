#!/usr/bin/python3
"""Train the bundled writing-assistant tagger: flags the words of a text that hold an error.

    PYTHONPATH=build/python /usr/bin/python3 training/train_tagger.py --out models/typo-tagger
        [--data ../shared/data] [--seed 0] [--epochs 4] [--vq-epochs 1] ...

The model is a ``LlamaForTokenClassification`` (docs/checkpoint-format.md) with a local window
in every layer (``sliding_window``), by default causal and without positions (``incnn_position:
none``): a row reads the ``--window`` tokens up to itself, so an edit, inserts and deletes
included, reaches only the rows within the window after it in each layer, and VQ after each
attention output keeps most of those rows' codes. (Rotary positions would keep an insert's
effect local only in exact arithmetic: a shifted row's rotations round differently in float32,
so a bit-exact runtime must recompute every row after an insert; docs/accuracy.md has both.)
Labels per token: ``O`` or ``ERROR``; a word is flagged when any of its tokens is.

Data: PEP bodies and food reviews (training splits), whitespace-normalised, with errors injected
afresh every epoch by typos.py (dropped, doubled, swapped and mistyped letters, common
misspellings, doubled words, their/there-style confusions). Tokens are the bundled tokenizer's
(``models/pep-vq/tokenizer.model``, through the incnn module so that they are the runtime's); a
token is ``ERROR`` when its bytes overlap a changed word.

Steps (seeded): dense training (AdamW, warm-up then cosine), k-means init of the VQ codebooks,
VQ fine-tuning (straight-through, commitment loss, EMA codebooks: vq.py), export, then a
word-level evaluation on held-out documents with injected errors (a fixed seed) of the dense
twin (torch), the exported tagger (the incnn runtime, through incnn.Document on each whole
document) and hunspell (``hunspell -d en_US``, when installed) on the same text. Metrics go to
``--metrics`` (JSON) and docs/accuracy.md cites them.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.environ.get("INCNN_BUILD", os.path.join(ROOT, "build")),
                                "python"))
import incnn  # noqa: E402
import models as M  # noqa: E402
import textdata  # noqa: E402
import typos  # noqa: E402

LABELS = ["O", "ERROR"]
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_BR = re.compile(r"<br\s*/?>", re.I)


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def clean(text):
    return textdata.normalize_ws(_BR.sub(" ", text))


def load_texts(data_dir):
    """(train, test) lists of whitespace-normalised texts: PEP bodies and food reviews."""
    _, pep_train, pep_test = textdata.load_task("pep", data_dir)
    _, food_train, food_test = textdata.load_task("foods", data_dir)
    train = [clean(t) for t, _ in pep_train] + [clean(t) for t, _ in food_train]
    test = [clean(t) for t, _ in pep_test] + [clean(t) for t, _ in food_test]
    return [t for t in train if t], [t for t in test if t]


class Pieces:
    """Token ids and each token's byte range in the text, from the runtime's tokenizer."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.size = {}

    def piece_bytes(self, i):
        n = self.size.get(i)
        if n is None:
            p = self.tok.piece(i)
            n = 1 if _BYTE_PIECE.match(p) else len(p.replace("\u2581", " ").encode())
            self.size[i] = n
        return n

    def encode(self, text):
        """(ids, [(start, end)] byte ranges in text), or None if the tokens do not spell the
        text (a normaliser changed it)."""
        ids = self.tok.encode(text)
        raw = text.encode()
        pos, ranges = -1, []  # the dummy prefix: one space before the text
        for i in ids:
            n = self.piece_bytes(i)
            s = max(pos, 0)
            e = pos + n
            # A leading space belongs to no word.
            if s < e and s < len(raw) and raw[s:s + 1] == b" ":
                s += 1
            ranges.append((s, max(s, e)))
            pos += n
        return (ids, ranges) if pos == len(raw) else None


def byte_spans(text, spans):
    """Character spans -> byte spans of text's UTF-8."""
    out = []
    for s, e in spans:
        bs = len(text[:s].encode())
        out.append((bs, bs + len(text[s:e].encode())))
    return out


def labelled(pieces, text, rng, rate, ctx):
    """A corrupted window of text: (ids, labels) of at most ctx tokens, or None."""
    bad, spans = typos.corrupt(text, rng, rate)
    enc = pieces.encode(bad)
    if enc is None:
        return None
    ids, ranges = enc
    err = byte_spans(bad, spans)
    labels = [int(e > s and typos.overlaps((s, e), err)) for s, e in ranges]
    if len(ids) > ctx:
        start = rng.randrange(len(ids) - ctx + 1)
        ids, labels = ids[start:start + ctx], labels[start:start + ctx]
    return ids, labels


def epoch_windows(texts, pieces, rng, a):
    """One window of about ctx tokens from each text, errors injected afresh."""
    out = []
    for t in texts:
        chars = a.ctx * 5
        if len(t) > chars:
            s = rng.randrange(len(t) - chars)
            s = t.find(" ", s) + 1
            t = t[s:s + chars]
            t = t[:t.rfind(" ")] if " " in t else t
        item = labelled(pieces, t, rng, a.rate, a.ctx)
        if item and item[0]:
            out.append(item)
    return out


def train_phase(model, texts, pieces, a, epochs, lr, rng, tag, vq=False):
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    nodecay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": nodecay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = (len(texts) + a.batch - 1) // a.batch
    total = max(1, epochs * steps_per_epoch)
    warm = min(100, total // 10 + 1)
    weight = torch.tensor([1.0, a.error_weight])
    step = 0
    for ep in range(epochs):
        t0 = time.time()
        model.train()
        order = list(range(len(texts)))
        rng.shuffle(order)
        wins = epoch_windows([texts[i] for i in order], pieces, rng, a)
        wins.sort(key=lambda w: len(w[0]))
        batches = [wins[i:i + a.batch] for i in range(0, len(wins), a.batch)]
        rng.shuffle(batches)
        tot = n_tok = 0
        for b in batches:
            ids, ln = M.batch([w[0] for w in b])
            y = torch.full(ids.shape, -100, dtype=torch.int64)
            for i, w in enumerate(b):
                y[i, :len(w[1])] = torch.as_tensor(w[1])
            t = step / max(1, total - warm)
            rate = lr * (step + 1) / warm if step < warm else \
                lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, t))))
            for g in opt.param_groups:
                g["lr"] = rate
            logits = model(ids, ln)
            loss = F.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), weight=weight,
                                   ignore_index=-100)
            commit = model.commit_loss() if vq else torch.zeros(())
            opt.zero_grad()
            (loss + a.beta * commit).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            k = int((y >= 0).sum())
            tot += float(loss) * k
            n_tok += k
        msg = "[%s] epoch %d/%d  loss %.4f  %d tokens" % (tag, ep + 1, epochs, tot / n_tok,
                                                           n_tok)
        if vq:
            msg += "  code-usage %s" % ",".join("%.2f" % float(m.usage().mean())
                                                for _, m in model.vq_modules())
        log(msg + "  (%.0fs)" % (time.time() - t0))


@torch.no_grad()
def init_codebooks(model, texts, pieces, a, rng):
    model.eval()
    wins = epoch_windows(texts, pieces, rng, a)
    model.set_vq(False)
    for s in sorted(model.r["vq"], key=lambda s: (int(s["layer"]), s["site"])):
        key = (int(s["layer"]), s["site"])
        rows = []
        for i in range(0, len(wins), a.batch):
            ids, ln = M.batch([w[0] for w in wins[i:i + a.batch]])
            cap = {}
            model.hidden(ids, ln, capture=cap)
            mask = torch.arange(ids.shape[1])[None, :] < ln[:, None]
            rows.append(cap[key][mask])
        X = torch.cat(rows, 0)
        if X.shape[0] > 200000:
            X = X[torch.as_tensor(np.random.RandomState(a.seed).choice(X.shape[0], 200000,
                                                                         replace=False))]
        vqm = model.vq[M.vq_key(*key)]
        vqm.init_kmeans(X, iters=10, batch_rows=a.batch * a.ctx)
        vqm.enabled = True
        log("  k-means init of VQ %d.%s on %d rows" % (key[0], key[1], X.shape[0]))


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
def eval_set(texts, a, seed=12345):
    """Documents with errors injected by a fixed seed; long PEPs cut to --eval-chars."""
    rng = random.Random(seed)
    out = []
    for t in texts:
        if len(t) > a.eval_chars:
            t = t[:t.rfind(" ", 0, a.eval_chars)]
        bad, spans = typos.corrupt(t, rng, a.rate)
        out.append((bad, spans))
    return out


def word_flags(text, words, token_ranges, token_labels):
    """Indices of the words (character spans) that a flagged token overlaps."""
    flagged_bytes = [r for r, l in zip(token_ranges, token_labels) if l]
    spans = byte_spans(text, words)
    return {i for i, w in enumerate(spans) if typos.overlaps(w, flagged_bytes)}


def gold_words(words, spans):
    return {i for i, w in enumerate(words) if typos.overlaps(w, spans)}


@torch.no_grad()
def eval_torch(model, pieces, docs):
    model.eval()
    counts = {"tp": 0, "fp": 0, "fn": 0}
    for text, spans in docs:
        enc = pieces.encode(text)
        if enc is None:
            continue
        ids, ranges = enc
        labels = model(torch.as_tensor([ids]))[0].argmax(-1).tolist()
        words = typos.words(text)
        typos.score(counts, gold_words(words, spans), word_flags(text, words, ranges, labels))
    return typos.metrics(counts)


@torch.no_grad()
def calibrate(model, pieces, docs):
    """The shift of ERROR's score bias that maximises word-level F0.5 on `docs` (a word's
    score: its tokens' largest ERROR - O logit margin); applied to the model, returned."""
    model.eval()
    scored = []  # (margin, gold) per word
    for text, spans in docs:
        enc = pieces.encode(text)
        if enc is None:
            continue
        ids, ranges = enc
        logits = model(torch.as_tensor([ids]))[0]
        margin = (logits[:, 1] - logits[:, 0]).tolist()
        words = typos.words(text)
        gold = gold_words(words, spans)
        wb = byte_spans(text, words)
        best = [-1e30] * len(words)
        order = sorted(range(len(wb)), key=lambda i: wb[i][0])
        k = 0
        for (s, e), m in sorted(zip(ranges, margin)):
            while k < len(order) and wb[order[k]][1] <= s:
                k += 1
            j = k
            while j < len(order) and wb[order[j]][0] < e:
                if e > s:
                    best[order[j]] = max(best[order[j]], m)
                j += 1
        scored += [(best[i], i in gold) for i in range(len(words))]
    scored.sort(key=lambda x: -x[0])
    total = sum(g for _, g in scored)
    tp = fp = 0
    best_f, best_t = -1.0, 0.0
    for i, (m, g) in enumerate(scored):
        tp += g
        fp += not g
        if i + 1 < len(scored) and scored[i + 1][0] == m:
            continue
        p, r = tp / (tp + fp), tp / max(1, total)
        f = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
        if f > best_f:
            best_f, best_t = f, m
    # Flag words whose margin is at least best_t: ERROR's bias moves by -best_t (a small
    # step below it, so that a margin equal to the threshold still wins the argmax).
    shift = -best_t + 1e-4
    model.score.bias.data[1] += shift
    return shift, best_f


def eval_incnn(program, docs):
    counts = {"tp": 0, "fp": 0, "fn": 0}
    for text, spans in docs:
        doc = incnn.Document(program, text)
        labels = [int(l != LABELS[0]) for l in doc.prediction]
        words = typos.words(text)
        typos.score(counts, gold_words(words, spans),
                    word_flags(text, words, doc.token_bytes, labels))
    return typos.metrics(counts)


def eval_hunspell(docs):
    """hunspell -d en_US on the same words: a word is flagged when one of its letter runs is a
    word hunspell lists as misspelled (a dictionary judges a word without its context)."""
    if not shutil.which("hunspell"):
        return None
    pieces = lambda w: re.findall(r"[A-Za-z][A-Za-z']*", w)  # noqa: E731
    vocab = sorted({p for text, _ in docs for s, e in typos.words(text)
                    for p in pieces(text[s:e])})
    out = subprocess.run(["hunspell", "-d", "en_US", "-l"], input="\n".join(vocab) + "\n",
                         capture_output=True, text=True, check=True).stdout
    bad = set(out.split())
    counts = {"tp": 0, "fp": 0, "fn": 0}
    for text, spans in docs:
        words = typos.words(text)
        flagged = {i for i, (s, e) in enumerate(words)
                   if any(p in bad for p in pieces(text[s:e]))}
        typos.score(counts, gold_words(words, spans), flagged)
    return typos.metrics(counts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "typo-tagger"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "pep-vq",
                                                        "tokenizer.model"))
    ap.add_argument("--metrics", default=os.path.join(ROOT, "build", "typo-tagger.metrics.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=256)
    ap.add_argument("--window", type=int, default=16,
                    help="keys i - WINDOW < j <= i (causal) or |i - j| < WINDOW in every layer")
    ap.add_argument("--position", default="none", choices=["none", "rope"])
    ap.add_argument("--attention", default="causal", choices=["causal", "bidirectional"])
    ap.add_argument("--vq", default="attn_out", choices=["none", "attn_out"])
    ap.add_argument("--groups", type=int, default=1)
    ap.add_argument("--codes", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--rate", type=float, default=0.05, help="share of plain words changed")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--vq-epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--vq-lr", type=float, default=3e-4)
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--error-weight", type=float, default=2.0)
    ap.add_argument("--eval-docs", type=int, default=300)
    ap.add_argument("--eval-chars", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = random.Random(a.seed)
    t_start = time.time()

    # The tokenizer, as the runtime runs it: a throwaway program around it.
    work = tempfile.mkdtemp(prefix="tagger-")
    vq = "" if a.vq == "none" else ",".join("%d:attn_out:%d:%d" % (i, a.groups, a.codes)
                                            for i in range(a.layers))
    config = M.make_config(family="llama", vocab=2048, hidden=a.hidden, layers=a.layers,
                           heads=a.heads, ffn=a.ffn, max_pos=65536, position=a.position,
                           attention=a.attention, labels=LABELS, vq=vq,
                           window=a.window, token=True)
    model = M.IncnnModel(config, dropout=0.05, seed=a.seed)
    model.export(os.path.join(work, "init"))
    shutil.copy(a.tokenizer, os.path.join(work, "init", "tokenizer.model"))
    pieces = Pieces(incnn.compile(os.path.join(work, "init")).tokenizer)

    train, test = load_texts(a.data)
    log("data: %d training and %d held-out texts" % (len(train), len(test)))
    model.set_vq(False)
    train_phase(model, train, pieces, a, a.epochs, a.lr, rng, "dense")
    docs = eval_set(test[:a.eval_docs // 2] + test[-(a.eval_docs - a.eval_docs // 2):], a)
    # The decision threshold, on training texts with errors of another seed.
    valid = eval_set(random.Random(a.seed + 1).sample(train, a.eval_docs), a, seed=777)
    dense_shift, _ = calibrate(model, pieces, valid)
    dense = eval_torch(model, pieces, docs)
    model.score.bias.data[1] -= dense_shift
    log("dense twin (torch): precision %.3f recall %.3f F0.5 %.3f" % (
        dense["precision"], dense["recall"], dense["f0.5"]))
    if vq:
        init_codebooks(model, train, pieces, a, rng)
        train_phase(model, train, pieces, a, a.vq_epochs, a.vq_lr, rng, "vq", vq=True)
    shift, f_valid = calibrate(model, pieces, valid)
    log("calibrated: ERROR bias %+.3f (validation F0.5 %.3f)" % (shift, f_valid))
    model.export(a.out)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    program = incnn.compile(a.out, os.path.join(work, "tagger.incnn"))
    tagger = eval_incnn(program, docs)
    log("tagger (incnn): precision %.3f recall %.3f F0.5 %.3f" % (
        tagger["precision"], tagger["recall"], tagger["f0.5"]))
    hun = eval_hunspell(docs)
    if hun:
        log("hunspell en_US: precision %.3f recall %.3f F0.5 %.3f" % (
            hun["precision"], hun["recall"], hun["f0.5"]))
    metrics = {"args": vars(a), "eval_docs": len(docs), "dense_twin": dense, "tagger": tagger,
               "error_bias_shift": shift, "validation_f0.5": f_valid,
               "hunspell": hun, "train_s": round(time.time() - t_start, 1),
               "torch": torch.__version__}
    os.makedirs(os.path.dirname(os.path.abspath(a.metrics)), exist_ok=True)
    with open(a.metrics, "w") as f:
        json.dump(metrics, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    tune = getattr(__import__("train_classifier"), "tune_malloc", None)
    if tune:
        tune()
    main()

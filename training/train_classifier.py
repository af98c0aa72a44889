#!/usr/bin/python3
"""Train a (VQ) transformer document classifier and export it as an incnn checkpoint.

    /usr/bin/python3 training/train_classifier.py --task pep|foods --out DIR
        [--vq none|attn_out --groups G --codes K] [--seed 0] [--data ../shared/data] ...

Steps (all seeded; single thread; the same command gives the same bytes):
 1. tokenizer: ``spm_train`` BPE on the training split (textdata.py), written to
    ``DIR/tokenizer.model`` (or ``--tokenizer`` reuses one);
 2. dense training for ``--epochs`` on windows of ``--ctx`` tokens: each epoch every training
    document contributes one window, the first ``--ctx`` tokens with probability
    ``--first-prob``, otherwise a random window (data augmentation for long documents);
    AdamW, linear warm-up then cosine decay, dropout; (``--init DIR`` starts from a dense
    checkpoint instead and skips this phase when ``--epochs 0``);
 3. with ``--vq attn_out``: a VQ layer (G groups x K codes) is inserted after the attention
    output projection of every layer (``--vq-layers`` to choose), each codebook initialised by
    k-means on that site's activations over the training windows (layers in forward order, the
    earlier VQ already applied), then the whole model is fine-tuned for ``--vq-epochs`` with
    the straight-through estimator, commitment loss (``--beta``) and EMA codebooks with
    dead-code restarts (vq.py);
 4. export ``DIR/config.json`` + ``DIR/model.safetensors`` (``max_position_embeddings`` =
    ``--ctx``: the runtime sees the first ``--ctx`` tokens of a document), then evaluate the
    exported checkpoint with ``incnn_ref`` on the first ``--ctx`` tokens of every test document
    (exactly what ``incnn-run --text`` sees), print the accuracy and write ``--metrics`` (default
    ``DIR/metrics.json``).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ckpt as ck  # noqa: E402
import incnn_ref as ref  # noqa: E402
import models as M  # noqa: E402
import textdata  # noqa: E402


def tune_malloc():
    """Keep freed memory in the heap (glibc): the attention tensors are re-allocated every step,
    and returning them to the OS each time costs more system time than the matmuls."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-2, 1 << 28)  # M_TOP_PAD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (max; also disables its dynamic growth)
    except (OSError, AttributeError):
        pass


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def windows(docs, ctx, rng, first_prob):
    out = []
    for ids in docs:
        if len(ids) <= ctx or rng.rand() < first_prob:
            out.append(ids[:ctx])
        else:
            s = rng.randint(0, len(ids) - ctx + 1)
            out.append(ids[s:s + ctx])
    return out


def length_batches(lengths, bs, rng, pool=32):
    """Batches of indices: shuffled order, sorted by length within pools of ``pool`` batches
    (less padding), batch order shuffled again."""
    n = len(lengths)
    out = []
    for s in range(0, n, bs * pool):
        idx = np.arange(s, min(n, s + bs * pool))
        idx = idx[np.argsort([lengths[i] for i in idx], kind="stable")]
        out += [idx[i:i + bs] for i in range(0, len(idx), bs)]
    return [out[i] for i in rng.permutation(len(out))]


def evaluate(model, docs, labels, ctx, bs=16):
    """Accuracy of the torch model (eval mode) on the first ctx tokens of each doc."""
    model.eval()
    correct = 0
    preds = []
    with torch.no_grad():
        for s in range(0, len(docs), bs):
            ids, ln = M.batch([d[:ctx] for d in docs[s:s + bs]])
            p = model(ids, ln).argmax(-1)
            preds += p.tolist()
    correct = sum(int(p == y) for p, y in zip(preds, labels))
    return correct / max(1, len(docs)), preds


def train_phase(model, docs, labels, a, epochs, lr, rng, tag, test=None, vq=False):
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    nodecay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": nodecay, "weight_decay": 0.0}], lr=lr)
    n = len(docs)
    steps_per_epoch = (n + a.batch - 1) // a.batch
    total = max(1, epochs * steps_per_epoch)
    warm = min(a.warmup, total // 10 + 1)

    def lr_at(step):
        if step < warm:
            return lr * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    counts = np.bincount(labels, minlength=model.r["labels"]).astype(np.float64)
    cw = (counts.sum() / np.maximum(counts, 1)) ** a.class_weight_power
    cw = torch.tensor(cw / (cw * counts).sum() * counts.sum(), dtype=torch.float32)
    step = 0
    y_all = torch.as_tensor(labels, dtype=torch.int64)
    for ep in range(epochs):
        t0 = time.time()
        model.train()
        order = rng.permutation(n)
        wins = windows([docs[i] for i in order], a.ctx, rng, a.first_prob)
        batches = length_batches([len(w) for w in wins], a.batch, rng)
        tot_loss = tot_commit = tot_margin = 0.0
        correct = 0
        for bi in batches:
            ids, ln = M.batch([wins[i] for i in bi])
            y = y_all[order[bi]]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(ids, ln)
            loss = F.cross_entropy(logits, y, weight=cw, label_smoothing=a.label_smoothing)
            commit = model.commit_loss() if vq else torch.zeros(())
            margin = model.margin_loss() if vq else torch.zeros(())
            opt.zero_grad()
            (loss + a.beta * commit + a.margin_weight * margin).backward()
            if a.clip:
                torch.nn.utils.clip_grad_norm_(params, a.clip)
            opt.step()
            step += 1
            tot_loss += float(loss) * len(y)
            tot_commit += float(commit) * len(y)
            tot_margin += float(margin) * len(y)
            correct += int((logits.argmax(-1) == y).sum())
        msg = "[%s] epoch %d/%d  loss %.4f  train-acc %.3f" % (
            tag, ep + 1, epochs, tot_loss / n, correct / n)
        if vq:
            use = ["%.2f" % float(m.usage().mean()) for _, m in model.vq_modules()]
            msg += "  commit %.4f  margin %.4f  code-usage %s  restarts %d" % (
                tot_commit / n, tot_margin / n, ",".join(use),
                sum(m.restarts for _, m in model.vq_modules()))
        if test is not None and (a.eval_every and ((ep + 1) % a.eval_every == 0 or ep + 1 == epochs)):
            acc, _ = evaluate(model, test[0], test[1], a.ctx)
            msg += "  test-acc %.3f" % acc
        log(msg + "  (%.1fs)" % (time.time() - t0))


@torch.no_grad()
def init_codebooks(model, docs, a, rng):
    """k-means init of every VQ site, in forward order, on first+random training windows."""
    model.eval()
    wins = windows(docs, a.ctx, rng, a.first_prob)
    sites = sorted(model.r["vq"], key=lambda s: (int(s["layer"]), M.SITES.index(s["site"])))
    model.set_vq(False)
    for s in sites:
        key = (int(s["layer"]), s["site"])
        rows = []
        for i in range(0, len(wins), a.batch):
            ids, ln = M.batch(wins[i:i + a.batch])
            cap = {}
            model.hidden(ids, ln, capture=cap)
            mask = torch.arange(ids.shape[1])[None, :] < ln[:, None]
            rows.append(cap[key][mask])
        X = torch.cat(rows, 0)
        if X.shape[0] > a.kmeans_rows:
            X = X[torch.as_tensor(rng.choice(X.shape[0], a.kmeans_rows, replace=False))]
        vqm = model.vq[M.vq_key(*key)]
        vqm.init_kmeans(X, iters=a.kmeans_iters, batch_rows=a.batch * a.ctx)
        vqm.enabled = True
        log("  k-means init of VQ %d.%s on %d rows" % (key[0], key[1], X.shape[0]))


DENSE_ARGS = ("task", "data", "vocab_size", "family", "layers", "hidden", "heads", "ffn",
              "position", "attention", "window", "global_every", "pool", "ctx", "first_prob",
              "epochs", "lr", "batch",
              "warmup", "weight_decay", "dropout", "attn_dropout", "label_smoothing",
              "class_weight_power", "clip", "init", "seed", "threads")


def dense_cache_key(a, tok):
    """Everything the dense phase depends on: its arguments and the tokenizer's bytes."""
    key = {k: getattr(a, k) for k in DENSE_ARGS}
    key["tokenizer_sha256"] = textdata.sha256_file(tok)
    key["torch"] = torch.__version__
    return json.dumps(key, sort_keys=True)


def save_dense_cache(path, key, model, rng, train_s):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith("vq.")}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp%d" % os.getpid()
    torch.save({"key": key, "state": state, "np_rng": rng.get_state(),
                "torch_rng": torch.get_rng_state(), "dense_train_s": train_s}, tmp)
    os.replace(tmp, path)


def load_dense_cache(path, key):
    if not os.path.exists(path):
        return None
    c = torch.load(path, weights_only=False)
    if c.get("key") != key:
        log("dense cache %s was made with other dense settings: retraining" % path)
        return None
    return c


def ref_accuracy(model_dir, docs, labels, ctx):
    m = ref.load_model(model_dir)
    preds = [int(np.argmax(ref.forward(m, d[:ctx] if ctx else d))) for d in docs]
    return sum(int(p == y) for p, y in zip(preds, labels)) / len(docs), preds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["pep", "foods"], required=True)
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--data", default=None, help="default: ../shared/data from the repo root")
    ap.add_argument("--tokenizer", default=None, help="reuse this tokenizer.model")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--family", choices=["opt", "llama"], default="opt")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--position", choices=["none", "learned", "rope"], default="none")
    ap.add_argument("--attention", choices=["causal", "bidirectional"], default="causal")
    ap.add_argument("--pool", choices=["last", "mean"], default="mean")
    ap.add_argument("--ctx", type=int, default=512, help="window = max_position_embeddings")
    ap.add_argument("--window", type=int, default=0,
                    help="sliding-window attention over this many keys (0: global)")
    ap.add_argument("--global-every", type=int, default=0,
                    help="with --window: every N-th layer (from 0) attends globally")
    ap.add_argument("--eval-whole", action="store_true",
                    help="evaluate the exported checkpoint on whole documents, not the first "
                         "--ctx tokens")
    ap.add_argument("--first-prob", type=float, default=0.5,
                    help="probability that a training window is the document's first")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--attn-dropout", type=float, default=0.0)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--class-weight-power", type=float, default=0.0,
                    help="loss weight ~ (1/frequency)^power (0: unweighted)")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--init", default=None, help="start from this dense checkpoint")
    ap.add_argument("--dense-cache", default=None,
                    help="save the dense phase here, or load it if it matches (skips training)")
    ap.add_argument("--vq", choices=["none", "attn_out", "block_out"], default="none")
    ap.add_argument("--vq-layers", default="all", help='"all" or e.g. "0,1"')
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--codes", type=int, default=64)
    ap.add_argument("--vq-ctx", type=int, default=0,
                    help="windows of the VQ phase (k-means and fine-tuning), default --ctx: "
                         "longer windows teach codes the rows far into a document")
    ap.add_argument("--vq-epochs", type=int, default=10)
    ap.add_argument("--vq-lr", type=float, default=3e-4)
    ap.add_argument("--beta", type=float, default=0.25, help="commitment loss weight")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="VQ margin target: gap between the two nearest codeword distances "
                         "over their spacing (0: no margin loss)")
    ap.add_argument("--margin-weight", type=float, default=1.0, help="margin loss weight")
    ap.add_argument("--ema-decay", type=float, default=0.95)
    ap.add_argument("--dead-frac", type=float, default=0.03)
    ap.add_argument("--kmeans-rows", type=int, default=30000)
    ap.add_argument("--kmeans-iters", type=int, default=15)
    ap.add_argument("--eval-every", type=int, default=5, help="epochs between test prints")
    ap.add_argument("--metrics", default=None, help="default: OUT/metrics.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.vq_ctx > a.ctx and a.position != "none":
        ap.error("--vq-ctx longer than --ctx needs --position none (no position table)")

    t_start = time.time()
    tune_malloc()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.RandomState(a.seed)
    os.makedirs(a.out, exist_ok=True)

    label_names, train, test = textdata.load_task(a.task, a.data)
    tok = os.path.join(a.out, "tokenizer.model")
    t0 = time.time()
    if a.tokenizer:
        if os.path.abspath(a.tokenizer) != os.path.abspath(tok):
            with open(a.tokenizer, "rb") as f, open(tok, "wb") as g:
                g.write(f.read())
    else:
        textdata.train_tokenizer([t for t, _ in train], tok, a.vocab_size)
    vocab = len(ck.read_spm_pieces(tok))
    tr_docs = textdata.encode(tok, [t for t, _ in train])
    te_docs = textdata.encode(tok, [t for t, _ in test])
    tr_docs = [d if d else [3] for d in tr_docs]  # (never empty in practice)
    te_docs = [d if d else [3] for d in te_docs]
    tr_y = [y for _, y in train]
    te_y = [y for _, y in test]
    lens = np.array([len(d) for d in tr_docs + te_docs])
    log("task %s: %d train / %d test docs, vocab %d, tokens per doc median %d (p5 %d, p95 %d), "
        "window %d  (tokenizer %.1fs)" % (a.task, len(train), len(test), vocab,
                                           np.median(lens), np.percentile(lens, 5),
                                           np.percentile(lens, 95), a.ctx, time.time() - t0))
    majority = max(np.bincount(te_y)) / len(te_y)
    log("majority-class test accuracy %.3f" % majority)

    vq_sites = []
    if a.vq != "none":
        layers = range(a.layers) if a.vq_layers == "all" else [int(x) for x in a.vq_layers.split(",")]
        vq_sites = [{"layer": L, "site": a.vq, "groups": a.groups, "codes": a.codes}
                    for L in layers]
    dense_cfg = M.make_config(a.family, vocab=vocab, hidden=a.hidden, layers=a.layers,
                              heads=a.heads, ffn=a.ffn, max_pos=a.ctx, position=a.position,
                              attention=a.attention, labels=label_names, pool=a.pool,
                              window=a.window, global_every=a.global_every)
    dense_cfg["bos_token_id"] = 1
    dense_cfg["eos_token_id"] = 2
    full_cfg = dict(dense_cfg)
    if vq_sites:
        full_cfg["incnn_vq"] = vq_sites
    vq_kw = {"decay": a.ema_decay, "dead_frac": a.dead_frac, "margin": a.margin}
    model = M.IncnnModel(full_cfg, dropout=a.dropout, attn_dropout=a.attn_dropout,
                         vq_kwargs=vq_kw, seed=a.seed)
    if a.init:
        _, t = ck.load_checkpoint(a.init)
        model.load_tensors({k: v for k, v in t.items() if not k.startswith("incnn.vq.")})
    model.set_vq(False)
    nparam = sum(p.numel() for p in model.parameters())
    log("model: %s, %d layers, d=%d, %d heads, ffn %d, position %s, %s attention, pool %s, "
        "%d parameters" % (a.family, a.layers, a.hidden, a.heads, a.ffn, a.position,
                           a.attention, a.pool, nparam))
    metrics = {"task": a.task, "argv": sys.argv[1:] if argv is None else list(argv),
               "window_tokens": a.ctx, "majority_test_acc": majority,
               "n_train": len(train), "n_test": len(test), "vocab": vocab,
               "parameters": nparam}
    test_set = (te_docs, te_y)

    t0 = time.time()
    cache_key = dense_cache_key(a, tok)
    cached = load_dense_cache(a.dense_cache, cache_key) if a.dense_cache else None
    if cached is not None:
        model.load_state_dict(cached["state"], strict=False)
        rng.set_state(cached["np_rng"])
        torch.set_rng_state(cached["torch_rng"])
        metrics["dense_train_s"] = cached["dense_train_s"]
        metrics["dense_cache"] = "loaded"
        log("dense phase loaded from %s (trained in %.1fs)" % (a.dense_cache,
                                                                cached["dense_train_s"]))
    else:
        if a.epochs:
            train_phase(model, tr_docs, tr_y, a, a.epochs, a.lr, rng, "dense", test_set)
        metrics["dense_train_s"] = round(time.time() - t0, 1)
        if a.dense_cache:
            save_dense_cache(a.dense_cache, cache_key, model, rng, metrics["dense_train_s"])
            metrics["dense_cache"] = "saved"
            log("dense phase saved to %s" % a.dense_cache)
    acc, _ = evaluate(model, te_docs, te_y, a.ctx)
    metrics["dense_test_acc"] = acc
    log("dense test accuracy (first %d tokens): %.4f" % (a.ctx, acc))

    if vq_sites:
        t0 = time.time()
        va = argparse.Namespace(**vars(a))  # the VQ phase's windows
        va.ctx = a.vq_ctx or a.ctx
        if va.ctx > a.ctx:  # no position table limits a model without positions
            model.r["max_pos"] = va.ctx
        init_codebooks(model, tr_docs, va, rng)
        acc0, _ = evaluate(model, te_docs, te_y, a.ctx)
        metrics["vq_kmeans_only_test_acc"] = acc0
        log("VQ inserted (k-means codebooks, no fine-tuning): test accuracy %.4f" % acc0)
        train_phase(model, tr_docs, tr_y, va, a.vq_epochs, a.vq_lr, rng, "vq", test_set, vq=True)
        metrics["vq_train_s"] = round(time.time() - t0, 1)

    model.eval()
    meta = {"source": "training/train_classifier.py", "task": a.task, "seed": str(a.seed)}
    model.export(a.out, metadata=meta)
    t0 = time.time()
    eval_ctx = None if a.eval_whole else a.ctx
    acc, preds = ref_accuracy(a.out, te_docs, te_y, eval_ctx)
    metrics["test_acc"] = acc
    metrics["test_eval"] = "whole documents" if a.eval_whole else "first %d tokens" % a.ctx
    metrics["test_confusion"] = np.bincount(np.array(te_y) * len(label_names) + np.array(preds),
                                            minlength=len(label_names) ** 2).reshape(
        len(label_names), -1).tolist()
    metrics["labels"] = label_names
    metrics["total_s"] = round(time.time() - t_start, 1)
    metrics["files_sha256"] = {f: textdata.sha256_file(os.path.join(a.out, f))
                               for f in ("config.json", "model.safetensors", "tokenizer.model")}
    log("test accuracy of the exported checkpoint (incnn_ref, %s): %.4f  "
        "(majority %.4f; eval %.1fs)" % (metrics["test_eval"], acc, majority, time.time() - t0))
    log("confusion (rows = true %s): %s" % (label_names, metrics["test_confusion"]))
    mpath = a.metrics or os.path.join(a.out, "metrics.json")
    with open(mpath, "w") as f:
        json.dump(metrics, f, indent=1, sort_keys=True)
        f.write("\n")
    log("wrote %s (total %.1fs)" % (mpath, time.time() - t_start))
    return metrics


if __name__ == "__main__":
    main()

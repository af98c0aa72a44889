#!/usr/bin/python3
"""stories260K (llama2.c) with VQ after attention: self-generated data, k-means init, brief
fine-tuning, export, perplexity with incnn_ref.

    /usr/bin/python3 training/train_stories_vq.py --out build/var/stories-vq \
        [--src ../shared/models/stories260K] [--codes 64,256] [--steps 300] [--seed 0]
        [--data OLD/data.json] [--layers 1,2,3,4] [--distill 1]

--data reuses an earlier run's sequences; --layers puts VQ only on those layers; --distill w
fine-tunes on (1-w) x cross-entropy + w x KL(dense || VQ) per position (teacher: the dense model).

No TinyStories text is available here, so every data set is text the dense model writes itself,
sampled from BOS (token 1) by the torch model (models.IncnnModel, which computes what incnn_ref
computes), each with its own seed:
  * eval set ``eval.json``: ``--eval-t08`` sequences sampled at temperature 0.8 plus
    ``--eval-greedy`` sequences made of an 8-token temperature-0.8 prefix continued greedily
    (greedy decoding from BOS alone would give one sequence), ``--len`` tokens each incl. BOS;
  * an extra held-out set sampled at temperature 1.0 (the model's own distribution);
  * fine-tuning set: ``--train-seqs`` sequences at temperature 1.0. (At temperature 1 the dense
    model is already the maximum-likelihood fit of its own samples, so fine-tuning on them only
    repairs what VQ broke; sharper samples would also "improve" the dense model on the
    temperature-0.8 eval set.)
Steps: 1. convert ``stories260K.bin`` + ``tok512.bin`` with llama2c_to_hf.py into OUT/dense;
2. for each K in ``--codes``: a VQ site (1 group x K codes, full 64-dim codewords) after the
attention output projection of every layer, codebooks initialised by k-means (k-means++ seeding,
``--kmeans-iters`` Lloyd iterations, ``--kmeans-rows`` rows) on the pre-VQ activations of the
fine-tuning set, layer by layer with the earlier layers already quantized; export OUT/kK-kmeans;
then fine-tune ``--steps`` AdamW steps (batch ``--batch`` sequences) on next-token
cross-entropy + ``--beta`` x commitment loss, straight-through estimator, EMA codebooks with
dead-code restarts (vq.py); export OUT/kK. 3. perplexity of every exported checkpoint with
incnn_ref (next-token NLL of positions 1..n-1, BOS not scored), written to OUT/metrics.json.
Single thread, seeded: the same command writes the same files.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one thread, also in BLAS (before numpy/torch load it)

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ckpt as ck  # noqa: E402
import incnn_ref as ref  # noqa: E402
import llama2c_to_hf  # noqa: E402
import models as M  # noqa: E402

BOS = 1


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


@torch.no_grad()
def _sample_batch(model, b, length, temperature, g, greedy_after=None, return_logits=False):
    """One batch of b sequences from BOS with a key/value cache (llama family, dense model:
    per new token the same formulas as models.IncnnModel / incnn_ref, one row at a time)."""
    r, dec = model.r, model.dec[0]
    H, KV, hd = r["heads"], r["kv_heads"], r["head_dim"]
    theta = dec.layers[0].self_attn.theta
    cos, sin = ref.rope_tables(length, hd, theta)
    kc = [torch.zeros(b, KV, length, hd) for _ in dec.layers]
    vc = [torch.zeros(b, KV, length, hd) for _ in dec.layers]
    tok = torch.full((b,), BOS, dtype=torch.int64)
    seq, all_logits = [tok], []
    for p in range(length - 1):
        x = dec.embed_tokens(tok)
        for li, layer in enumerate(dec.layers):
            at = layer.self_attn
            z = layer.norm1(x)
            q = ref.apply_rope(at.q_proj(z).view(b, H, hd), cos[p], sin[p])
            kc[li][:, :, p] = ref.apply_rope(at.k_proj(z).view(b, KV, hd), cos[p], sin[p])
            vc[li][:, :, p] = at.v_proj(z).view(b, KV, hd)
            kk = kc[li][:, :, :p + 1].repeat_interleave(H // KV, 1)  # [b, H, p+1, hd]
            vv = vc[li][:, :, :p + 1].repeat_interleave(H // KV, 1)
            s = (q[:, :, None, :] @ kk.transpose(-1, -2)) / math.sqrt(hd)  # [b, H, 1, p+1]
            o = (torch.softmax(s, -1) @ vv).reshape(b, H * hd)
            h = x + at.o_proj(o)
            x = h + layer.mlp(layer.norm2(h))
        logits = dec.norm(x) @ model.lm_weight().t()
        if return_logits:
            all_logits.append(logits)
        if temperature == 0 or (greedy_after is not None and p >= greedy_after):
            tok = logits.argmax(-1)
        else:
            tok = torch.multinomial(torch.softmax(logits / temperature, -1), 1,
                                    generator=g)[:, 0]
        seq.append(tok)
    ids = torch.stack(seq, 1)
    return (ids, torch.stack(all_logits, 1)) if return_logits else ids


@torch.no_grad()
def sample(model, n_seq, length, temperature, seed, greedy_after=None, batch=64):
    """n_seq sequences of ``length`` tokens starting with BOS. temperature 0 -> greedy;
    greedy_after=k: sample the first k generated tokens, then greedy."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, n_seq, batch):
        out += _sample_batch(model, min(batch, n_seq - s), length, temperature, g,
                             greedy_after).tolist()
    return out


def ref_perplexity(model_dir, seqs):
    """exp(mean NLL) of tokens 1..n-1 of every sequence under the checkpoint (incnn_ref)."""
    m = ref.load_model(model_dir)
    nll, cnt = 0.0, 0
    for s in seqs:
        lg = torch.from_numpy(ref.lm_logits_all(m, s)).double()
        lp = torch.log_softmax(lg[:-1], -1)
        tgt = torch.as_tensor(s[1:])
        nll -= float(lp[torch.arange(len(s) - 1), tgt].sum())
        cnt += len(s) - 1
    return math.exp(nll / cnt)


@torch.no_grad()
def init_codebooks(model, seqs, a, rng):
    model.eval()
    sites = sorted(model.r["vq"], key=lambda s: int(s["layer"]))
    model.set_vq(False)
    seqs = seqs[:a.kmeans_seqs]  # bounded cost: eval-mode VQ is the slow exact form
    for s in sites:
        key = (int(s["layer"]), s["site"])
        rows = []
        for i in range(0, len(seqs), a.batch):
            ids, _ = M.batch(seqs[i:i + a.batch])
            cap = {}
            model.hidden(ids, None, capture=cap)
            rows.append(cap[key].reshape(-1, cap[key].shape[-1]))
        X = torch.cat(rows, 0)
        if X.shape[0] > a.kmeans_rows:
            X = X[torch.as_tensor(rng.choice(X.shape[0], a.kmeans_rows, replace=False))]
        vqm = model.vq[M.vq_key(*key)]
        vqm.init_kmeans(X, iters=a.kmeans_iters, batch_rows=a.batch * len(seqs[0]))
        vqm.enabled = True
    log("  k-means init of %d VQ sites (%d rows each)" % (len(sites), min(a.kmeans_rows, X.shape[0])))


def finetune(model, seqs, a, rng, teacher=None):
    """--distill w: loss = (1 - w) x next-token CE + w x KL(teacher || model) per position
    (teacher: the dense model, temperature 1), + beta x commitment."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    nodecay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": nodecay, "weight_decay": 0.0}], lr=a.lr)
    warm = max(1, a.steps // 10)
    data = torch.as_tensor(seqs, dtype=torch.int64)
    order = []
    t0 = time.time()
    tot = tot_c = 0.0
    for step in range(a.steps):
        lr = a.lr * (step + 1) / warm if step < warm else a.lr * (
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, a.steps - warm))))
        for gr in opt.param_groups:
            gr["lr"] = lr
        if len(order) < a.batch:
            order += list(rng.permutation(len(seqs)))
        bi, order = order[:a.batch], order[a.batch:]
        ids = data[bi]
        model.train()
        logits = model(ids[:, :-1])
        flat = logits.reshape(-1, logits.shape[-1])
        loss = F.cross_entropy(flat, ids[:, 1:].reshape(-1))
        if a.distill > 0:
            with torch.no_grad():
                tl = torch.log_softmax(teacher(ids[:, :-1]).reshape(flat.shape), -1)
            kl = F.kl_div(torch.log_softmax(flat, -1), tl, log_target=True, reduction="batchmean")
            obj = (1 - a.distill) * loss + a.distill * kl
        else:
            obj = loss
        commit = model.commit_loss()
        opt.zero_grad()
        (obj + a.beta * commit).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        tot += float(loss)
        tot_c += float(commit)
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            n = a.log_every if (step + 1) % a.log_every == 0 else (step + 1) % a.log_every
            use = ",".join("%.2f" % float(m.usage().mean()) for _, m in model.vq_modules())
            log("  step %d/%d  lm-loss %.4f (ppl %.3f)  commit %.4f  code-usage %s  restarts %d"
                "  (%.1fs)" % (step + 1, a.steps, tot / n, math.exp(tot / n), tot_c / n, use,
                               sum(m.restarts for _, m in model.vq_modules()), time.time() - t0))
            tot = tot_c = 0.0
    model.eval()


def export(model, out_dir, tok, meta):
    model.export(out_dir, metadata=meta)
    shutil.copyfile(tok, os.path.join(out_dir, "tokenizer.model"))


def main(argv=None):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--src", default=os.path.join(root, "..", "shared", "models", "stories260K"))
    ap.add_argument("--codes", default="64,256", help="comma list of K (1 group x K each)")
    ap.add_argument("--groups", default="1",
                    help="groups per VQ site: one number, or a comma list (one per --layers entry)")
    ap.add_argument("--len", type=int, default=256, help="tokens per sequence incl. BOS")
    ap.add_argument("--eval-t08", type=int, default=48)
    ap.add_argument("--eval-greedy", type=int, default=16)
    ap.add_argument("--eval-t10", type=int, default=64)
    ap.add_argument("--train-seqs", type=int, default=256,
                    help="fine-tuning sequences; with --data, extra ones are sampled fresh")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--ema-decay", type=float, default=0.95)
    ap.add_argument("--kmeans-rows", type=int, default=30000)
    ap.add_argument("--kmeans-iters", type=int, default=15)
    ap.add_argument("--kmeans-seqs", type=int, default=256,
                    help="k-means rows are drawn from the first N fine-tuning sequences")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", default="all",
                    help="comma list of layers that get a VQ site after attention (default all)")
    ap.add_argument("--distill", type=float, default=0.0,
                    help="weight w of KL(dense || VQ) in the fine-tuning loss; (1-w) x CE")
    ap.add_argument("--data", default=None,
                    help="reuse the sequences of an earlier run's data.json instead of sampling")
    a = ap.parse_args(argv)

    t_start = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = np.random.RandomState(a.seed)
    os.makedirs(a.out, exist_ok=True)
    dense_dir = os.path.join(a.out, "dense")
    llama2c_to_hf.convert(os.path.join(a.src, "stories260K.bin"),
                          os.path.join(a.src, "tok512.bin"), dense_dir)
    tok = os.path.join(dense_dir, "tokenizer.model")
    dense = M.IncnnModel.from_checkpoint(dense_dir)
    dense.eval()
    cfg = ck.load_config(dense_dir)

    # sanity: the torch model computes what incnn_ref computes
    probe = [BOS, 100, 200, 300, 50]
    with torch.no_grad():
        d = float((dense(torch.as_tensor([probe]))[0, -1]
                   - torch.from_numpy(ref.forward(ref.load_model(dense_dir), probe))).abs().max())
    ids, lg = _sample_batch(dense, 2, 40, 1.0, torch.Generator().manual_seed(7),
                            return_logits=True)
    with torch.no_grad():
        d2 = float((dense(ids[:, :-1]) - lg).abs().max())
    log("converted %s: torch vs incnn_ref max |logit diff| %.2e; cached sampler vs full "
        "forward %.2e" % (dense_dir, d, d2))

    t0 = time.time()
    data_path = os.path.join(a.out, "data.json")
    if a.data:
        with open(a.data) as f:
            data = json.load(f)
        extra = a.train_seqs - len(data["train_t10"])
        if extra > 0:  # fresh fine-tuning sequences; the eval sets stay those of --data
            data["train_t10"] = data["train_t10"] + sample(dense, extra, a.len, 1.0,
                                                           a.seed * 100 + 5)
    else:
        data = {
            "eval_t08": sample(dense, a.eval_t08, a.len, 0.8, a.seed * 100 + 1),
            "eval_greedy": sample(dense, a.eval_greedy, a.len, 0.8, a.seed * 100 + 2,
                                  greedy_after=8),
            "eval_t10": sample(dense, a.eval_t10, a.len, 1.0, a.seed * 100 + 3),
            "train_t10": sample(dense, a.train_seqs, a.len, 1.0, a.seed * 100 + 4),
        }
    with open(data_path, "w") as f:
        json.dump(data, f)
    log(("loaded " + a.data + " ->" if a.data else "generated") + " %s in %.1fs: %s" % (data_path, time.time() - t0,
                                       ", ".join("%s %d x %d" % (k, len(v), a.len)
                                                 for k, v in data.items())))
    pieces = ck.read_spm_pieces(tok)
    log("  greedy sample: %r" % ck.spm_decode(pieces, data["eval_greedy"][0][1:80]))
    log("  t=0.8 sample:  %r" % ck.spm_decode(pieces, data["eval_t08"][0][1:80]))

    sets = {"eval (t0.8 + greedy)": data["eval_t08"] + data["eval_greedy"],
            "t0.8": data["eval_t08"], "greedy": data["eval_greedy"], "t1.0": data["eval_t10"]}

    def ppl_all(model_dir):
        return {k: round(ref_perplexity(model_dir, v), 4) for k, v in sets.items()}

    metrics = {"argv": sys.argv[1:] if argv is None else list(argv), "len": a.len,
               "data": {k: len(v) for k, v in data.items()}}
    t0 = time.time()
    metrics["dense"] = ppl_all(dense_dir)
    log("dense perplexity (incnn_ref): %s  (%.1fs)" % (metrics["dense"], time.time() - t0))

    nl = int(cfg["num_hidden_layers"])
    layers = list(range(nl)) if a.layers == "all" else sorted(int(x) for x in a.layers.split(","))
    groups = [int(x) for x in a.groups.split(",")]
    if len(groups) == 1:
        groups *= len(layers)
    if len(groups) != len(layers):
        raise SystemExit("--groups: %d values for %d VQ layers" % (len(groups), len(layers)))
    tag = "" if layers == list(range(nl)) else "-L" + "".join(str(x) for x in layers)
    tag += "-kd%g" % a.distill if a.distill > 0 else ""
    for K in [int(x) for x in a.codes.split(",")]:
        t0 = time.time()
        vcfg = dict(cfg)
        vcfg["incnn_vq"] = [{"layer": L, "site": "attn_out", "groups": g, "codes": K}
                            for L, g in zip(layers, groups)]
        model = M.IncnnModel(vcfg, vq_kwargs={"decay": a.ema_decay}, seed=a.seed)
        model.load_tensors(ck.load_checkpoint(dense_dir)[1], strict=True)
        krng = np.random.RandomState(a.seed * 1000 + K)
        torch.manual_seed(a.seed * 1000 + K)
        init_codebooks(model, data["train_t10"], a, krng)
        gtag = str(groups[0]) if len(set(groups)) == 1 else "-".join(map(str, groups))
        name = "g%sk%d%s" % (gtag, K, tag)
        meta = {"source": "training/train_stories_vq.py", "seed": str(a.seed)}
        kdir = os.path.join(a.out, name + "-kmeans")
        export(model, kdir, tok, meta)
        r = {"kmeans": ppl_all(kdir)}
        log("%s k-means only: %s" % (name, r["kmeans"]))
        finetune(model, data["train_t10"], a, krng, teacher=dense)
        fdir = os.path.join(a.out, name)
        export(model, fdir, tok, meta)
        r["finetuned"] = ppl_all(fdir)
        r["seconds"] = round(time.time() - t0, 1)
        log("%s fine-tuned %d steps: %s  (%.1fs)" % (name, a.steps, r["finetuned"], r["seconds"]))
        metrics[name] = r
    metrics["total_s"] = round(time.time() - t_start, 1)
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, sort_keys=True)
        f.write("\n")
    log("wrote %s (total %.1fs)" % (os.path.join(a.out, "metrics.json"), metrics["total_s"]))
    return metrics


if __name__ == "__main__":
    main()

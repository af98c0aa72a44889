#!/usr/bin/python3
"""Write a random incnn checkpoint (config.json + model.safetensors), for tests and benchmarks.

    /usr/bin/python3 training/make_random_model.py OUT_DIR --family opt|llama|bert|modernbert
        [--layers 2 --hidden 64 --heads 4 --kv-heads 2 --ffn 128 --vocab 97 --max-pos 64
         --position learned|rope|none --attention causal|bidirectional
         --task lm|classifier|token_classifier --labels 3 --pool last|mean|cls
         --window 8 --global-every 3 --bias --vq "0:attn_out:4:16,1:block_out:2:8" --seed 0]

bert and modernbert write Hugging Face checkpoints of ``{Bert,ModernBert}For{Sequence,Token}
Classification`` (HF config keys and tensor names, see incnn_ref) with --task classifier or
token_classifier, hidden 32 and ffn 64 by default; modernbert takes --pool cls|mean
(classifier_pooling), --window (local_attention, the full window: keys ``|i - j| <= window // 2``;
default 128), --global-every (global_attn_every_n_layers, default 3) and --bias (attention, MLP,
norm and classifier biases).

Weights are drawn so that activations are non-degenerate: linear layers N(0, 1/fan_in)
(attention scores of order 1, so attention is neither uniform nor one-hot), embeddings
N(0, 0.3^2), norm weights 1 + N(0, 0.1^2), biases N(0, 0.02^2).

VQ sites (``layer:site:groups:codes``) get codebooks fitted by k-means (float64 numpy, a few
Lloyd iterations, k-means++ seeding) to the model's own activations at that site on random
token sequences, computed with incnn_ref. Sites are fitted in forward order with the earlier
sites' VQ already applied, so each codebook sees the distribution it will quantize. Codewords
are distinct (no exact ties between codewords).
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ckpt as ck  # noqa: E402
import incnn_ref as ref  # noqa: E402


def parse_vq(spec):
    sites = []
    if not spec:
        return sites
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 4:
            raise ValueError("VQ site %r: want layer:site:groups:codes" % item)
        sites.append({"layer": int(parts[0]), "site": parts[1], "groups": int(parts[2]),
                      "codes": int(parts[3])})
    order = {"attn_out": 0, "block_out": 1}
    for s in sites:
        if s["site"] not in order:
            raise ValueError("VQ site must be attn_out or block_out, got %r" % s["site"])
    keys = [(s["layer"], s["site"]) for s in sites]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate VQ site")
    return sorted(sites, key=lambda s: (s["layer"], order[s["site"]]))


def make_config(a):
    fam = a.family
    if fam in ref.ENCODERS:
        return encoder_config(a)
    token = a.task == "token_classifier"
    if token and fam != "llama":
        raise ValueError("--task token_classifier needs --family llama, bert or modernbert")
    position = a.position or ("learned" if fam == "opt" else "rope")
    classifier = a.task in ("classifier", "token_classifier")
    arch = {"opt": "OPT", "llama": "Llama"}[fam] + (
        "ForTokenClassification" if token else
        "ForSequenceClassification" if classifier else "ForCausalLM")
    c = {
        "architectures": [arch],
        "model_type": fam,
        "vocab_size": a.vocab,
        "hidden_size": a.hidden,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "max_position_embeddings": a.max_pos,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "incnn_position": position,
        "incnn_attention": a.attention,
    }
    if getattr(a, "window", 0):
        c["sliding_window"] = a.window
        if getattr(a, "global_every", 0):
            c["global_attn_every_n_layers"] = a.global_every
    if fam == "opt":
        if a.kv_heads not in (None, a.heads):
            raise ValueError("opt has no grouped-query attention: --kv-heads must equal --heads")
        c.update(ffn_dim=a.ffn, do_layer_norm_before=True, word_embed_proj_dim=a.hidden,
                 activation_function=a.act, enable_bias=True, layer_norm_eps=1e-5,
                 tie_word_embeddings=bool(a.tied))
        if position == "rope":
            c["rope_theta"] = 10000.0
    else:
        c.update(intermediate_size=a.ffn, num_key_value_heads=a.kv_heads or a.heads,
                 rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu",
                 tie_word_embeddings=bool(a.tied))
    if classifier:
        c["id2label"] = {str(i): "LABEL_%d" % i for i in range(a.labels)}
        c["label2id"] = {"LABEL_%d" % i: i for i in range(a.labels)}
        c["num_labels"] = a.labels
        if not token:
            c["incnn_pool"] = a.pool
    vq = parse_vq(a.vq)
    if vq:
        c["incnn_vq"] = vq
    return c


def encoder_config(a):
    """HF config of a bert / modernbert classifier (the keys HF's save_pretrained writes)."""
    if a.task == "lm":
        raise ValueError("%s: --task must be classifier or token_classifier" % a.family)
    if a.kv_heads not in (None, a.heads) or a.position:
        raise ValueError("%s: no --kv-heads or --position" % a.family)
    token = a.task == "token_classifier"
    if a.family == "bert":
        if a.window or a.global_every or a.bias or a.pool:
            raise ValueError("bert: no --window, --global-every, --bias or --pool")
        c = {
            "architectures": ["BertFor" + ("Token" if token else "Sequence") + "Classification"],
            "model_type": "bert",
            "vocab_size": a.vocab,
            "hidden_size": a.hidden,
            "num_hidden_layers": a.layers,
            "num_attention_heads": a.heads,
            "intermediate_size": a.ffn,
            "hidden_act": a.act,
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": a.max_pos,
            "type_vocab_size": 2,
            "initializer_range": 0.02,
            "layer_norm_eps": 1e-12,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "use_cache": True,
            "classifier_dropout": None,
            "torch_dtype": "float32",
        }
    else:
        c = {
            "architectures": ["ModernBertFor" + ("Token" if token else "Sequence")
                              + "Classification"],
            "model_type": "modernbert",
            "vocab_size": a.vocab,
            "hidden_size": a.hidden,
            "num_hidden_layers": a.layers,
            "num_attention_heads": a.heads,
            "intermediate_size": a.ffn,
            "hidden_activation": a.act,
            "max_position_embeddings": a.max_pos,
            "initializer_range": 0.02,
            "initializer_cutoff_factor": 2.0,
            "norm_eps": 1e-5,
            "norm_bias": a.bias,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "cls_token_id": 1,
            "sep_token_id": 2,
            "global_rope_theta": 160000.0,
            "local_rope_theta": 10000.0,
            "global_attn_every_n_layers": a.global_every or 3,
            "local_attention": a.window or 128,
            "attention_bias": a.bias,
            "attention_dropout": 0.0,
            "embedding_dropout": 0.0,
            "mlp_bias": a.bias,
            "mlp_dropout": 0.0,
            "decoder_bias": True,
            "classifier_pooling": a.pool,
            "classifier_dropout": 0.0,
            "classifier_bias": a.bias,
            "classifier_activation": "gelu",
            "deterministic_flash_attn": False,
            "sparse_prediction": False,
            "sparse_pred_ignore_index": -100,
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
        }
    c["id2label"] = {str(i): "LABEL_%d" % i for i in range(a.labels)}
    c["label2id"] = {"LABEL_%d" % i: i for i in range(a.labels)}
    c["num_labels"] = a.labels
    vq = parse_vq(a.vq)
    if vq:
        c["incnn_vq"] = vq
    return c


def encoder_weights(t, r, rng, lin, normw, bias):
    """Adds the HF-named tensors of a bert / modernbert body and head, up to the classifier, to
    t (lin, normw, bias: make_weights' draws)."""
    d, f, V, L = r["hidden"], r["ffn"], r["vocab"], r["layers"]
    if r["family"] == "bert":
        e = "bert.embeddings."
        t[e + "word_embeddings.weight"] = rng.normal(0.0, 0.3, (V, d))
        t[e + "position_embeddings.weight"] = rng.normal(0.0, 0.3, (r["max_pos"], d))
        t[e + "token_type_embeddings.weight"] = rng.normal(0.0, 0.3, (2, d))
        t[e + "LayerNorm.weight"], t[e + "LayerNorm.bias"] = normw(), bias(d)
        for i in range(L):
            q = "bert.encoder.layer.%d." % i
            for nm, (o, n_in) in (("attention.self.query", (d, d)), ("attention.self.key", (d, d)),
                                  ("attention.self.value", (d, d)),
                                  ("attention.output.dense", (d, d)),
                                  ("intermediate.dense", (f, d)), ("output.dense", (d, f))):
                t[q + nm + ".weight"], t[q + nm + ".bias"] = lin(o, n_in), bias(o)
            for nm in ("attention.output.LayerNorm", "output.LayerNorm"):
                t[q + nm + ".weight"], t[q + nm + ".bias"] = normw(), bias(d)
        if not r["token"]:
            t["bert.pooler.dense.weight"], t["bert.pooler.dense.bias"] = lin(d, d), bias(d)
    else:
        def norm(name):
            t[name + ".weight"] = normw()
            if r["norm_bias"]:
                t[name + ".bias"] = bias(d)

        def linb(name, o, n_in, has_bias):
            t[name + ".weight"] = lin(o, n_in)
            if has_bias:
                t[name + ".bias"] = bias(o)

        t["model.embeddings.tok_embeddings.weight"] = rng.normal(0.0, 0.3, (V, d))
        norm("model.embeddings.norm")
        for i in range(L):
            q = "model.layers.%d." % i
            if i:  # layer 0 has no attn_norm (HF: nn.Identity)
                norm(q + "attn_norm")
            linb(q + "attn.Wqkv", 3 * d, d, r["attn_bias"])
            linb(q + "attn.Wo", d, d, r["attn_bias"])
            norm(q + "mlp_norm")
            linb(q + "mlp.Wi", 2 * f, d, r["mlp_bias"])  # [input | gate]
            linb(q + "mlp.Wo", d, f, r["mlp_bias"])
        norm("model.final_norm")
        linb("head.dense", d, d, r["cls_bias"])
        norm("head.norm")


def make_weights(c, rng, tied):
    r = ref.resolved(c)
    d, f, V, L = r["hidden"], r["ffn"], r["vocab"], r["layers"]
    t = {}

    def lin(out_f, in_f):
        return rng.normal(0.0, 1.0 / np.sqrt(in_f), (out_f, in_f))

    def normw():
        return 1.0 + rng.normal(0.0, 0.1, d)

    def bias(n):
        return rng.normal(0.0, 0.02, n)

    if r["family"] in ref.ENCODERS:
        encoder_weights(t, r, rng, lin, normw, bias)
    elif r["family"] == "opt":
        p = "model.decoder."
        t[p + "embed_tokens.weight"] = rng.normal(0.0, 0.3, (V, d))
        if r["position"] == "learned":
            t[p + "embed_positions.weight"] = rng.normal(0.0, 0.3, (r["max_pos"] + 2, d))
        for i in range(L):
            q = p + "layers.%d." % i
            for nm, (o, n_in) in (("q_proj", (d, d)), ("k_proj", (d, d)), ("v_proj", (d, d)),
                                  ("out_proj", (d, d))):
                t[q + "self_attn.%s.weight" % nm] = lin(o, n_in)
                t[q + "self_attn.%s.bias" % nm] = bias(o)
            t[q + "self_attn_layer_norm.weight"] = normw()
            t[q + "self_attn_layer_norm.bias"] = bias(d)
            f1 = 2 * f if r["act"] in ("geglu", "swiglu") else f  # gated: [u | g]
            t[q + "fc1.weight"] = lin(f1, d)
            t[q + "fc1.bias"] = bias(f1)
            t[q + "fc2.weight"] = lin(d, f)
            t[q + "fc2.bias"] = bias(d)
            t[q + "final_layer_norm.weight"] = normw()
            t[q + "final_layer_norm.bias"] = bias(d)
        t[p + "final_layer_norm.weight"] = normw()
        t[p + "final_layer_norm.bias"] = bias(d)
    else:
        p = "model."
        kv = r["kv_heads"] * r["head_dim"]
        t[p + "embed_tokens.weight"] = rng.normal(0.0, 0.3, (V, d))
        for i in range(L):
            q = p + "layers.%d." % i
            t[q + "self_attn.q_proj.weight"] = lin(d, d)
            t[q + "self_attn.k_proj.weight"] = lin(kv, d)
            t[q + "self_attn.v_proj.weight"] = lin(kv, d)
            t[q + "self_attn.o_proj.weight"] = lin(d, d)
            t[q + "mlp.gate_proj.weight"] = lin(f, d)
            t[q + "mlp.up_proj.weight"] = lin(f, d)
            t[q + "mlp.down_proj.weight"] = lin(d, f)
            t[q + "input_layernorm.weight"] = normw()
            t[q + "post_attention_layernorm.weight"] = normw()
        t[p + "norm.weight"] = normw()
    if r["family"] in ref.ENCODERS:
        t["classifier.weight"] = rng.normal(0.0, 1.0 / np.sqrt(d), (r["labels"], d))
        t["classifier.bias"] = bias(r["labels"])
    elif r["classifier"]:
        t["score.weight"] = rng.normal(0.0, 1.0 / np.sqrt(d), (r["labels"], d))
        if r.get("token"):
            t["score.bias"] = bias(r["labels"])
    elif not tied:
        t["lm_head.weight"] = rng.normal(0.0, 0.3, (V, d))
    for s in r["vq"]:
        G, K = int(s["groups"]), int(s["codes"])
        t[ref.vq_name(s)] = np.zeros((G, K, d // G))  # placeholder until fitted
    return {k: np.asarray(v, dtype=np.float32) for k, v in t.items()}


def kmeans(X, K, rng, iters=10):
    """Lloyd's k-means on X [N, D] (float64), k-means++ seeding. Returns distinct centers [K, D]."""
    X = np.asarray(X, dtype=np.float64)
    N = X.shape[0]
    C = np.empty((K, X.shape[1]))
    C[0] = X[rng.randint(N)]
    d2 = ((X - C[0]) ** 2).sum(1)
    for k in range(1, K):
        tot = d2.sum()
        j = rng.choice(N, p=d2 / tot) if tot > 0 else rng.randint(N)
        C[k] = X[j]
        d2 = np.minimum(d2, ((X - C[k]) ** 2).sum(1))
    for _ in range(iters):
        dist = (X ** 2).sum(1)[:, None] - 2 * X @ C.T + (C ** 2).sum(1)[None, :]
        a = dist.argmin(1)
        for k in range(K):
            m = a == k
            if m.any():
                C[k] = X[m].mean(0)
            else:  # re-seed an empty cluster at the worst-served point
                C[k] = X[dist.min(1).argmax()]
    # make the codewords distinct in float32
    C32 = C.astype(np.float32)
    scale = max(float(np.abs(C32).max()), 1e-3)
    for _ in range(100):
        _, first = np.unique(C32, axis=0, return_index=True)
        if len(first) == K:
            break
        dup = np.setdiff1d(np.arange(K), first)
        C32[dup] += rng.normal(0.0, 1e-3 * scale, C32[dup].shape).astype(np.float32)
    return C32


def fit_codebooks(config, tensors, rng, n_seqs=32, seq_len=None, iters=10):
    r = ref.resolved(config)
    if not r["vq"]:
        return tensors
    seq_len = min(r["max_pos"], seq_len or 32)
    seqs = [rng.randint(0, r["vocab"], size=seq_len) for _ in range(n_seqs)]
    fitted = []
    for s in r["vq"]:  # already in forward order (parse_vq sorts)
        key = (int(s["layer"]), s["site"])
        model = ref.model_of(config, tensors)
        acts = []
        for seq in seqs:
            cap = {}
            ref.run(model, seq, vq_sites=fitted, capture=cap)
            acts.append(cap[key].numpy())
        X = np.concatenate(acts, 0)
        G, K = int(s["groups"]), int(s["codes"])
        dg = r["hidden"] // G
        cb = np.stack([kmeans(X[:, g * dg:(g + 1) * dg], K, rng, iters) for g in range(G)])
        tensors[ref.vq_name(s)] = cb.astype(np.float32)
        fitted.append(key)
    return tensors


def make(out_dir, argv_like=None, **kw):
    """Programmatic entry: make("dir", family="llama", layers=2, ...). Returns config."""
    args = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            if v:
                args.append(flag)
        else:
            args += [flag, str(v)]
    return main([out_dir] + (argv_like or []) + args)


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a random incnn checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--family", choices=["opt", "llama", "bert", "modernbert"], required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=None, help="default: 64, bert/modernbert 32")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="llama only (default: --heads)")
    ap.add_argument("--ffn", type=int, default=None, help="default: 128, bert/modernbert 64")
    ap.add_argument("--vocab", type=int, default=97)
    ap.add_argument("--max-pos", type=int, default=64)
    ap.add_argument("--position", choices=["learned", "rope", "none"], default=None,
                    help="default: learned for opt, rope for llama")
    ap.add_argument("--attention", choices=["causal", "bidirectional"], default="causal")
    ap.add_argument("--window", type=int, default=0,
                    help="sliding-window attention over this many keys (0: global); modernbert: "
                    "local_attention (0: 128)")
    ap.add_argument("--global-every", type=int, default=0,
                    help="with --window: every N-th layer (from 0) attends globally "
                    "(modernbert: 0 is 3)")
    ap.add_argument("--task", choices=["lm", "classifier", "token_classifier"], default=None,
                    help="default: lm, bert/modernbert classifier")
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--pool", choices=["last", "mean", "cls"], default=None,
                    help="opt/llama: last (default) or mean; modernbert: cls (default) or mean")
    ap.add_argument("--act", choices=["relu", "gelu", "gelu_new", "geglu", "swiglu"],
                    default=None,
                    help="opt (default relu), bert/modernbert (gelu, gelu_new or relu; default "
                    "gelu)")
    ap.add_argument("--bias", action="store_true",
                    help="modernbert: attention, MLP, norm and classifier biases")
    ap.add_argument("--tied", dest="tied", action="store_true", default=None,
                    help="tie lm_head to embed_tokens (default: opt tied, llama untied)")
    ap.add_argument("--untied", dest="tied", action="store_false")
    ap.add_argument("--vq", default="", help='e.g. "0:attn_out:4:16,1:block_out:2:8"')
    ap.add_argument("--fit-seqs", type=int, default=32, help="random sequences for k-means")
    ap.add_argument("--fit-len", type=int, default=32)
    ap.add_argument("--kmeans-iters", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    enc = a.family in ref.ENCODERS
    a.hidden = a.hidden or (32 if enc else 64)
    a.ffn = a.ffn or (64 if enc else 128)
    a.task = a.task or ("classifier" if enc else "lm")
    a.act = a.act or ("gelu" if enc else "relu")
    if a.pool is None and a.family != "bert":
        a.pool = "cls" if enc else "last"
    if a.tied is None:
        a.tied = a.family == "opt"
    torch.manual_seed(a.seed)
    rng = np.random.RandomState(a.seed)
    config = make_config(a)
    ref.resolved(config)  # validate
    tensors = make_weights(config, rng, a.tied)
    tensors = fit_codebooks(config, tensors, rng, a.fit_seqs, a.fit_len, a.kmeans_iters)
    ck.save_checkpoint(a.out_dir, config, tensors, metadata={"source": "make_random_model"})
    return config


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch float32 reference forward for incnn checkpoints (docs/checkpoint-format.md).

This is the oracle the C++ runtime is compared against, so it is written with plain torch ops,
one token row per row, no fused kernels, and the formulas are spelled out here:

Embedding (both families): ``x[p] = embed_tokens[t[p]]``; opt with ``incnn_position ==
"learned"`` adds ``embed_positions[p + 2]``. Positions are ``p = 0 .. n-1``; with learned
positions ``n`` must not exceed ``max_position_embeddings`` (other models run at any length).

Norms:
  * LayerNorm (opt): ``(x - mean(x)) / sqrt(var(x) + eps) * w + b``, biased variance, eps =
    ``layer_norm_eps`` (torch.nn.functional.layer_norm).
  * RMSNorm (llama, as HF): ``w * (x * rsqrt(mean(x^2) + eps))``, eps = ``rms_norm_eps``.

Attention, per head ``h`` (``hd = hidden / heads``; with GQA query head h reads kv head
``h // (heads / kv_heads)``, HF's repeat_kv / llama2.c's kv_mul):
  * opt:   ``q = (x Wq^T + bq) * hd**-0.5`` (scaled after q_proj incl. bias, as HF OPT),
           ``k = x Wk^T + bk``, ``v = x Wv^T + bv``, ``s = q k^T``.
  * llama: ``q = x Wq^T``, ``k = x Wk^T``, ``v = x Wv^T``, ``s = (q k^T) / sqrt(hd)``.
  * rope (either family; applied to q after its opt scaling and to k): HF half-split layout,
    ``inv_freq[i] = 1 / theta**(2i/hd)`` (float32; theta = ``rope_theta``, 10000 for opt),
    ``a = p * inv_freq[i]`` (float32), ``x1' = x1 cos a - x2 sin a``, ``x2' = x2 cos a + x1 sin a``
    with ``x1 = x[:hd/2]``, ``x2 = x[hd/2:]``.
  * causal: key j > query i masked (-inf) before softmax; bidirectional: no mask. With a
    sliding window W (``sliding_window``; not in the global layers of
    ``global_attn_every_n_layers``), keys with ``|i - j| >= W`` are masked too.
  * ``P = softmax(s)`` in float32 over keys, ``o = P v``, heads concatenated, then
    ``out_proj`` / ``o_proj`` (+ bias for opt).
MLP: opt ``fc2(act(fc1(LN2(h))))`` (gated: ``u, g = fc1(..).chunk(2); fc2(act(u) * g)`` for geglu
and swiglu) with ReLU, exact-erf GELU ``0.5 x (1 + erf(x / sqrt 2))`` or
tanh GELU (``gelu_new``);
llama ``down(silu(gate(z)) * up(z))``, ``silu(x) = x * sigmoid(x)``, ``z = RMS2(h)``.

Layer: ``a = attn_out(norm1(x))``; VQ ``attn_out`` (if configured) replaces ``a``;
``h = x + a``; ``y = h + mlp(norm2(h))``; VQ ``block_out`` replaces ``y``.

VQ with a codebook ``C [G, K, d/G]``: the row is split into G contiguous groups; group g picks
``argmin_k sum((x_g - C[g,k])**2)`` (float32 squared L2; ties -> lowest k) and is replaced by
``C[g,k]``.

Heads, after the final norm (opt ``model.decoder.final_layer_norm``, llama ``model.norm``) of
every row: causal LM -> ``lm_head(z[n-1])`` (``lm_head.weight`` or the tied ``embed_tokens``);
classifier -> ``score(pool(z))`` where ``pool`` is ``z[n-1]`` (last) or ``sum_p z[p] / n`` (mean).

Encoders (``model_type`` "bert" / "modernbert"): HF checkpoints of ``BertFor{Sequence,Token}
Classification`` / ``ModernBertFor{Sequence,Token}Classification`` with HF tensor names and the
defaults of HF's BertConfig / ModernBertConfig, computed as HF's eager path with attention_mask
all ones, token_type_ids all 0, position_ids ``0 .. n-1`` and no dropout. Attention is
bidirectional, per head ``P = softmax((q k^T) * hd**-0.5)`` (float32), ``o = P v``, heads
concatenated; LN is LayerNorm as above; ``act`` names: gelu (exact erf), gelu_new /
gelu_pytorch_tanh (tanh), relu. VQ sites as for the decoders (``attn_out``, ``block_out`` below).
  * bert (post-LN; names under ``bert.``):
    ``x = LN_emb((word[t[p]] + token_type[0]) + position[p])`` (``n <= max_position_embeddings``);
    layer (``encoder.layer.N.``): ``q, k, v = x W^T + b`` (``attention.self.{query,key,value}``),
    ``a = o W^T + b`` (``attention.output.dense``; VQ ``attn_out`` replaces ``a``),
    ``h = LN1(a + x)`` (``attention.output.LayerNorm``),
    ``y = LN2(act(h Wi^T + bi) Wo^T + bo + h)`` (``intermediate.dense``, ``output.dense``,
    ``output.LayerNorm``; VQ ``block_out`` replaces ``y``); eps ``layer_norm_eps`` (1e-12), act
    ``hidden_act`` (gelu); no final norm, ``z`` = the last layer's ``y``. Heads: sequence
    ``classifier(tanh(pooler.dense(z[0])))``; token ``classifier(z[p])`` for every row.
  * modernbert (pre-LN; names under ``model.``): ``x = LN(tok_embeddings[t[p]])``
    (``embeddings.norm``); layer ``l`` (``layers.l.``): ``a = attn.Wo(attn(LN_attn(x)))`` (layer 0
    has no ``attn_norm``: identity; VQ ``attn_out`` replaces ``a``), ``h = x + a``,
    ``u, g = mlp.Wi(LN_mlp(h)).chunk(2)``, ``y = h + mlp.Wo(act(u) * g)`` (VQ ``block_out``
    replaces ``y``); ``z = final_norm(x)``. ``attn.Wqkv`` rows are ``[q; k; v]``; rope (as above,
    HF's rotate_half) over the whole head: global layers (``l % global_attn_every_n_layers == 0``,
    default 3) use ``global_rope_theta`` (160000), the others ``local_rope_theta`` (10000; null:
    the global one) and attend only to keys with ``|i - j| <= local_attention // 2`` (default
    128); ``rope_parameters`` ``{"full_attention": {"rope_theta": ..}, "sliding_attention": ..}``
    (default rope_type only) replaces both thetas. Norms: eps ``norm_eps`` (1e-5), bias only
    with ``norm_bias`` (false); biases of Wqkv / attn.Wo with ``attention_bias``, of Wi / mlp.Wo
    with ``mlp_bias`` (false); act ``hidden_activation`` (gelu). Heads:
    ``head(v) = head.norm(act_c(head.dense(v)))`` (dense bias with ``classifier_bias`` (false),
    act_c ``classifier_activation`` (gelu)); sequence ``classifier(head(pool(z)))`` with
    ``classifier_pooling`` "cls" (``z[0]``, the default) or "mean" (``sum_p z[p] / n``); token
    ``classifier(head(z[p]))`` for every row. ``classifier`` always has a bias.

CLI:  /usr/bin/python3 training/incnn_ref.py MODEL_DIR --tokens "1 2 3" [--generate N]
prints ``{"output": [...], "generated": [...]}`` (output: the logits for the given tokens,
floats in shortest float32 round-trip form, for token classification a list of n rows;
generated: N greedy ids, argmax ties -> lowest id).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ckpt as ck  # noqa: E402


class Model:
    """A loaded checkpoint: ``config`` (raw json), ``r`` (resolved hyper-parameters, see
    incnn_ckpt.resolved) and ``w`` (name -> float32 torch tensor)."""

    resolve = staticmethod(ck.resolved)

    def __init__(self, config, tensors):
        self.config = config
        self.r = self.resolve(config)
        self.w = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                  for k, v in tensors.items()}
        self._check()

    def _check(self):
        r = self.r
        need = [self.emb_name()]
        for s in r["vq"]:
            need.append(vq_name(s))
        for n in need:
            if n not in self.w:
                raise ValueError("missing tensor %s" % n)
        for s in r["vq"]:
            shape = tuple(self.w[vq_name(s)].shape)
            want = (int(s["groups"]), int(s["codes"]), r["hidden"] // int(s["groups"]))
            if shape != want:
                raise ValueError("%s has shape %s, want %s" % (vq_name(s), shape, want))

    def prefix(self):
        return "model.decoder." if self.r["family"] == "opt" else "model."

    def emb_name(self):
        return self.prefix() + "embed_tokens.weight"

    def get(self, name, required=True):
        t = self.w.get(name)
        if t is None and required:
            raise ValueError("missing tensor %s" % name)
        return t


def vq_name(site):
    return "incnn.vq.%d.%s.codebook" % (int(site["layer"]), site["site"])


def load_model(model_dir):
    config, tensors = ck.load_checkpoint(model_dir)
    return model_of(config, tensors)


def model_of(config, tensors):
    """A Model, or an EncoderModel for model_type bert / modernbert."""
    return (EncoderModel if config.get("model_type") in ENCODERS else Model)(config, tensors)


def resolved(config):
    """incnn_ckpt.resolved, or encoder_resolved for model_type bert / modernbert."""
    return (encoder_resolved if config.get("model_type") in ENCODERS else ck.resolved)(config)


# --------------------------------------------------------------------------------------------
# encoders (bert, modernbert)
# --------------------------------------------------------------------------------------------

ENCODERS = ("bert", "modernbert")
ENCODER_ARCHS = {
    "BertForSequenceClassification": ("bert", False),
    "BertForTokenClassification": ("bert", True),
    "ModernBertForSequenceClassification": ("modernbert", False),
    "ModernBertForTokenClassification": ("modernbert", True),
}
ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


def encoder_resolved(config):
    """Hyper-parameters of a bert / modernbert checkpoint, HF's defaults filled in: family,
    classifier (always: no --generate), token (token classification), labels, position
    (learned / rope), vocab, hidden, layers, heads, head_dim, ffn, max_pos, eps, act, vq;
    modernbert also half (local half-width), global_every, global_theta, local_theta,
    norm_bias, attn_bias, mlp_bias, cls_bias, cls_act, pool."""
    fam = config.get("model_type")
    arch = config.get("architectures", [None])[0]
    if ENCODER_ARCHS.get(arch, (None,))[0] != fam:
        raise ValueError("%s: architectures[0] must be one of %s, got %r"
                         % (fam, [k for k, v in ENCODER_ARCHS.items() if v[0] == fam], arch))
    r = {
        "family": fam,
        "classifier": True,
        "token": ENCODER_ARCHS[arch][1],
        "labels": ck.num_labels(config),
        "vq": list(config.get("incnn_vq") or []),
    }
    if fam == "bert":
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("bert: position_embedding_type must be absolute")
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise ValueError("bert: is_decoder and add_cross_attention must be false")
        r.update(position="learned",
                 vocab=int(config.get("vocab_size", 30522)),
                 hidden=int(config.get("hidden_size", 768)),
                 layers=int(config.get("num_hidden_layers", 12)),
                 heads=int(config.get("num_attention_heads", 12)),
                 ffn=int(config.get("intermediate_size", 3072)),
                 max_pos=int(config.get("max_position_embeddings", 512)),
                 eps=float(config.get("layer_norm_eps", 1e-12)),
                 act=config.get("hidden_act", "gelu"))
    else:
        if "sliding_window" in config:
            raise ValueError("modernbert: give local_attention, not sliding_window")
        every = int(config.get("global_attn_every_n_layers", 3))
        layers = int(config.get("num_hidden_layers", 22))
        types = config.get("layer_types")
        if types is not None and types != ["sliding_attention" if i % every else "full_attention"
                                           for i in range(layers)]:
            raise ValueError("modernbert: layer_types must follow global_attn_every_n_layers")
        glob = float(config.get("global_rope_theta", 160000.0))
        loc = config.get("local_rope_theta", 10000.0)
        loc = glob if loc is None else float(loc)
        rope = config.get("rope_parameters")
        if rope is not None:
            full, slide = rope.get("full_attention") or {}, rope.get("sliding_attention") or {}
            if any(p.get("rope_type", "default") != "default" for p in (full, slide)):
                raise ValueError("modernbert: only the default rope_type is supported")
            glob = float(full.get("rope_theta", glob))
            loc = float(slide.get("rope_theta", loc))
        r.update(position="rope",
                 vocab=int(config.get("vocab_size", 50368)),
                 hidden=int(config.get("hidden_size", 768)),
                 layers=layers,
                 heads=int(config.get("num_attention_heads", 12)),
                 ffn=int(config.get("intermediate_size", 1152)),
                 max_pos=int(config.get("max_position_embeddings", 8192)),
                 eps=float(config.get("norm_eps", 1e-5)),
                 act=config.get("hidden_activation", "gelu"),
                 half=int(config.get("local_attention", 128)) // 2,
                 global_every=every, global_theta=glob, local_theta=loc,
                 norm_bias=bool(config.get("norm_bias", False)),
                 attn_bias=bool(config.get("attention_bias", False)),
                 mlp_bias=bool(config.get("mlp_bias", False)),
                 cls_bias=bool(config.get("classifier_bias", False)),
                 cls_act=config.get("classifier_activation", "gelu"),
                 pool=config.get("classifier_pooling", "cls"))
        if r["pool"] not in ("cls", "mean"):
            raise ValueError("modernbert: classifier_pooling must be cls or mean")
        if every < 1:
            raise ValueError("modernbert: global_attn_every_n_layers must be >= 1")
    for act in (r["act"], r.get("cls_act", "gelu")):
        if act not in ACTS:
            raise ValueError("%s: activation must be one of %s, got %r" % (fam, ACTS, act))
    if r["hidden"] % r["heads"]:
        raise ValueError("hidden_size % num_attention_heads must be 0")
    r["head_dim"] = r["hidden"] // r["heads"]
    if fam == "modernbert" and r["head_dim"] % 2:
        raise ValueError("rope needs an even head_dim")
    ck.check_vq_sites(r)
    return r


class EncoderModel(Model):
    """A bert / modernbert checkpoint (HF tensor names); ``r`` from encoder_resolved."""

    resolve = staticmethod(encoder_resolved)

    def prefix(self):
        return "bert." if self.r["family"] == "bert" else "model."

    def emb_name(self):
        return self.prefix() + ("embeddings.word_embeddings.weight" if self.r["family"] == "bert"
                                else "embeddings.tok_embeddings.weight")

    def lin(self, name, x, bias=True):
        """Linear layer ``name`` (``.weight``, and ``.bias`` when the config gives it one)."""
        return linear(x, self.get(name + ".weight"), self.get(name + ".bias") if bias else None)

    def ln(self, name, x):
        bias = self.r["family"] == "bert" or self.r["norm_bias"]
        return F.layer_norm(x, (self.r["hidden"],), self.get(name + ".weight"),
                            self.get(name + ".bias") if bias else None, self.r["eps"])


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def linear(x, w, b=None):
    y = x @ w.t()
    if b is not None:
        y = y + b
    return y


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rope_tables(n, hd, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    pos = torch.arange(n, dtype=torch.float32)
    ang = pos[:, None] * inv_freq[None, :]  # [n, hd/2]
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    """x: [heads, n, hd]; half-split pairs (i, i + hd/2)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def vq_quantize(x, codebook, chunk_rows=None):
    """x: [n, d]; codebook: [G, K, d/G]. Returns (quantized [n, d], codes int64 [n, G])."""
    n, d = x.shape
    G, K, dg = codebook.shape
    if chunk_rows is None:
        chunk_rows = max(1, (1 << 24) // max(1, G * K * dg))
    xq = torch.empty_like(x)
    codes = torch.empty((n, G), dtype=torch.int64)
    ar = torch.arange(K, dtype=torch.int64)
    for s in range(0, n, chunk_rows):
        xg = x[s:s + chunk_rows].reshape(-1, G, 1, dg)
        dist = (xg - codebook[None]).pow(2).sum(-1)  # [m, G, K]
        m = dist.min(-1, keepdim=True).values
        idx = torch.where(dist == m, ar, torch.full_like(ar, K)).min(-1).values  # first min
        codes[s:s + chunk_rows] = idx
        sel = codebook[torch.arange(G)[None, :], idx]  # [m, G, dg]
        xq[s:s + chunk_rows] = sel.reshape(-1, d)
    return xq, codes


def _attention(model, li, x):
    r = model.r
    p = model.prefix() + "layers.%d.self_attn." % li
    n = x.shape[0]
    H, KV, hd = r["heads"], r["kv_heads"], r["head_dim"]
    if r["family"] == "opt":
        q = linear(x, model.get(p + "q_proj.weight"), model.get(p + "q_proj.bias", False))
        q = q * (hd ** -0.5)
        k = linear(x, model.get(p + "k_proj.weight"), model.get(p + "k_proj.bias", False))
        v = linear(x, model.get(p + "v_proj.weight"), model.get(p + "v_proj.bias", False))
        theta = float(model.config.get("rope_theta", 10000.0))
    else:
        q = linear(x, model.get(p + "q_proj.weight"))
        k = linear(x, model.get(p + "k_proj.weight"))
        v = linear(x, model.get(p + "v_proj.weight"))
        theta = r["rope_theta"]
    q = q.view(n, H, hd).transpose(0, 1)  # [H, n, hd]
    k = k.view(n, KV, hd).transpose(0, 1)
    v = v.view(n, KV, hd).transpose(0, 1)
    if r["position"] == "rope":
        cos, sin = rope_tables(n, hd, theta)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
    rep = H // KV
    if rep > 1:
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
    # Queries in chunks, so long inputs need O(chunk * n) memory, not O(n^2);
    # a chunk reads only the keys some of its rows attend to.
    window = ck.window_of(r, li)
    causal = r["attention"] == "causal"
    chunk = 2048
    parts = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        k0 = max(0, a - window + 1) if window else 0
        k1 = b if causal else (min(n, b - 1 + window) if window else n)
        s = q[:, a:b] @ k[:, k0:k1].transpose(1, 2)  # [H, b - a, k1 - k0]
        if r["family"] == "llama":
            s = s / math.sqrt(hd)
        key = torch.arange(k0, k1)[None, :]
        row = torch.arange(a, b)[:, None]
        mask = torch.zeros(b - a, k1 - k0, dtype=torch.bool)
        if causal:
            mask |= key > row
        if window:
            mask |= (row - key >= window) | (key - row >= window)
        s = s.masked_fill(mask, float("-inf"))
        parts.append(torch.softmax(s, dim=-1) @ v[:, k0:k1])
    o = torch.cat(parts, dim=1).transpose(0, 1).reshape(n, H * hd)
    if r["family"] == "opt":
        return linear(o, model.get(p + "out_proj.weight"), model.get(p + "out_proj.bias", False))
    return linear(o, model.get(p + "o_proj.weight"))


def _mlp(model, li, z):
    r = model.r
    p = model.prefix() + "layers.%d." % li
    if r["family"] == "opt":
        a = linear(z, model.get(p + "fc1.weight"), model.get(p + "fc1.bias", False))
        gate = None
        if r["act"] in ("geglu", "swiglu"):  # fc1 gives [u | g]: act(u) * g
            a, gate = a.chunk(2, dim=-1)
        if r["act"] == "relu":
            a = F.relu(a)
        elif r["act"] == "gelu_new":
            a = 0.5 * a * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a ** 3)))
        elif r["act"] == "swiglu":
            a = a * torch.sigmoid(a)
        else:
            a = 0.5 * a * (1.0 + torch.erf(a / math.sqrt(2.0)))
        if gate is not None:
            a = a * gate
        return linear(a, model.get(p + "fc2.weight"), model.get(p + "fc2.bias", False))
    g = linear(z, model.get(p + "mlp.gate_proj.weight"))
    u = linear(z, model.get(p + "mlp.up_proj.weight"))
    return linear(g * torch.sigmoid(g) * u, model.get(p + "mlp.down_proj.weight"))


def _norm(model, prefix, x):
    r = model.r
    if r["family"] == "opt":
        return F.layer_norm(x, (r["hidden"],), model.get(prefix + ".weight"),
                            model.get(prefix + ".bias", False), r["eps"])
    return rms_norm(x, model.get(prefix + ".weight"), r["eps"])


def activation(name, x):
    """HF's ACT2FN[name] for the encoders' activations (ACTS)."""
    if name == "relu":
        return F.relu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def encoder_attention(q, k, v, half=None):
    """Bidirectional attention of heads q, k, v [H, n, hd]: ``softmax((q k^T) * hd**-0.5) v``
    with keys ``|i - j| > half`` masked when half is given. Returns [n, H * hd]. Queries go in
    chunks, each reading only the keys its rows attend to."""
    H, n, hd = q.shape
    chunk = 2048
    parts = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        k0, k1 = (0, n) if half is None else (max(0, a - half), min(n, b + half))
        s = (q[:, a:b] @ k[:, k0:k1].transpose(1, 2)) * hd ** -0.5
        if half is not None:
            dist = (torch.arange(a, b)[:, None] - torch.arange(k0, k1)[None, :]).abs()
            s = s.masked_fill(dist > half, float("-inf"))
        parts.append(torch.softmax(s, dim=-1) @ v[:, k0:k1])
    return torch.cat(parts, dim=1).transpose(0, 1).reshape(n, H * hd)


def _site(key, t, vq, capture):
    """A VQ site: records the activation (and codes) in capture, quantizes when configured."""
    if capture is not None:
        capture[key] = t
    if key in vq:
        t, codes = vq_quantize(t, vq[key])
        if capture is not None:
            capture[("codes",) + key] = codes
    return t


def _bert_layer(model, li, x, vq, capture):
    r = model.r
    p = model.prefix() + "encoder.layer.%d." % li
    n, H, hd = x.shape[0], r["heads"], r["head_dim"]
    q, k, v = (model.lin(p + "attention.self." + nm, x).view(n, H, hd).transpose(0, 1)
               for nm in ("query", "key", "value"))
    a = model.lin(p + "attention.output.dense", encoder_attention(q, k, v))
    a = _site((li, "attn_out"), a, vq, capture)
    h = model.ln(p + "attention.output.LayerNorm", a + x)
    m = activation(r["act"], model.lin(p + "intermediate.dense", h))
    y = model.ln(p + "output.LayerNorm", model.lin(p + "output.dense", m) + h)
    return _site((li, "block_out"), y, vq, capture)


def _modernbert_layer(model, li, x, vq, capture):
    r = model.r
    p = model.prefix() + "layers.%d." % li
    n, H, hd = x.shape[0], r["heads"], r["head_dim"]
    z = x if li == 0 else model.ln(p + "attn_norm", x)
    qkv = model.lin(p + "attn.Wqkv", z, r["attn_bias"]).view(n, 3, H, hd)
    q, k, v = (qkv[:, i].transpose(0, 1) for i in range(3))  # [H, n, hd]
    glob = li % r["global_every"] == 0
    cos, sin = rope_tables(n, hd, r["global_theta"] if glob else r["local_theta"])
    o = encoder_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v,
                          None if glob else r["half"])
    a = _site((li, "attn_out"), model.lin(p + "attn.Wo", o, r["attn_bias"]), vq, capture)
    h = x + a
    u, g = model.lin(p + "mlp.Wi", model.ln(p + "mlp_norm", h), r["mlp_bias"]).chunk(2, dim=-1)
    y = h + model.lin(p + "mlp.Wo", activation(r["act"], u) * g, r["mlp_bias"])
    return _site((li, "block_out"), y, vq, capture)


def _run_encoder(model, ids, vq, capture):
    r = model.r
    p = model.prefix()
    n = int(ids.shape[0])
    if r["family"] == "bert":
        e = p + "embeddings."
        x = model.get(e + "word_embeddings.weight")[ids]
        x = x + model.get(e + "token_type_embeddings.weight")[0]  # token_type_ids all 0
        x = model.ln(e + "LayerNorm", x + model.get(e + "position_embeddings.weight")[:n])
    else:
        x = model.ln(p + "embeddings.norm", model.get(p + "embeddings.tok_embeddings.weight")[ids])
    layer = _bert_layer if r["family"] == "bert" else _modernbert_layer
    for li in range(r["layers"]):
        x = layer(model, li, x, vq, capture)
    if r["family"] == "modernbert":
        x = model.ln(p + "final_norm", x)
    if capture is not None:
        capture["hidden"] = x
    return x


def _encoder_head(model, z):
    r = model.r
    if r["family"] == "bert":
        if not r["token"]:
            z = torch.tanh(model.lin("bert.pooler.dense", z[0]))
    else:
        if not r["token"]:
            z = z[0] if r["pool"] == "cls" else z.sum(0) / z.shape[0]
        z = activation(r["cls_act"], model.lin("head.dense", z, r["cls_bias"]))
        z = model.ln("head.norm", z)
    return model.lin("classifier", z)


def run(model, token_ids, vq_sites=None, capture=None):
    """Run the decoder or encoder. Returns the final hidden states ``[n, d]`` (torch float32):
    final-normed for the decoders and modernbert, bert's last layer output.

    vq_sites: None -> every configured VQ site is applied; otherwise an iterable of
    ``(layer, site)`` pairs restricting which configured sites are applied.
    capture: optional dict; receives ``(layer, site) -> pre-VQ activation [n, d]`` for both
    sites of every layer, ``("codes", layer, site) -> [n, G]`` for applied VQ sites, and
    ``"hidden" -> [n, d]`` (final-normed)."""
    r = model.r
    ids = torch.as_tensor(np.asarray(token_ids, dtype=np.int64))
    n = int(ids.shape[0])
    if n < 1:
        raise ValueError("need at least one token")
    if n > r["max_pos"] and r["position"] == "learned":
        raise ValueError("%d tokens exceed max_position_embeddings %d" % (n, r["max_pos"]))
    if int(ids.min()) < 0 or int(ids.max()) >= r["vocab"]:
        raise ValueError("token id out of vocabulary")
    vq = {}
    for s in r["vq"]:
        key = (int(s["layer"]), s["site"])
        if vq_sites is None or key in set(vq_sites):
            vq[key] = model.get(vq_name(s))
    if isinstance(model, EncoderModel):
        with torch.no_grad():
            return _run_encoder(model, ids, vq, capture)
    pre = model.prefix()
    with torch.no_grad():
        x = model.get(pre + "embed_tokens.weight")[ids]
        if r["position"] == "learned":
            x = x + model.get(pre + "embed_positions.weight")[torch.arange(n) + 2]
        for li in range(r["layers"]):
            lp = pre + "layers.%d." % li
            n1 = "self_attn_layer_norm" if r["family"] == "opt" else "input_layernorm"
            n2 = "final_layer_norm" if r["family"] == "opt" else "post_attention_layernorm"
            a = _attention(model, li, _norm(model, lp + n1, x))
            for site in ("attn_out",):
                if capture is not None:
                    capture[(li, site)] = a
                if (li, site) in vq:
                    a, codes = vq_quantize(a, vq[(li, site)])
                    if capture is not None:
                        capture[("codes", li, site)] = codes
            h = x + a
            y = h + _mlp(model, li, _norm(model, lp + n2, h))
            if capture is not None:
                capture[(li, "block_out")] = y
            if (li, "block_out") in vq:
                y, codes = vq_quantize(y, vq[(li, "block_out")])
                if capture is not None:
                    capture[("codes", li, "block_out")] = codes
            x = y
        fin = pre + ("final_layer_norm" if r["family"] == "opt" else "norm")
        z = _norm(model, fin, x)
        if capture is not None:
            capture["hidden"] = z
    return z


def head(model, z):
    """Apply the model's head to the hidden states z [n, d] from run -> logits (torch): [labels],
    [V], or [n, labels] for token classification."""
    r = model.r
    with torch.no_grad():
        if isinstance(model, EncoderModel):
            return _encoder_head(model, z)
        if r.get("token"):  # LlamaForTokenClassification: score with a bias, every row
            return linear(z, model.get("score.weight"), model.get("score.bias"))
        if r["classifier"]:
            pooled = z[-1] if r["pool"] == "last" else z.sum(0) / z.shape[0]
            return linear(pooled, model.get("score.weight"))
        w = model.get("lm_head.weight", False)
        if w is None or (r["family"] == "llama" and r.get("tied")):
            w = model.get(model.emb_name())
        return linear(z[-1], w)


def forward(model, token_ids, vq_sites=None):
    """Logits (float32 numpy): the last position's LM logits [V], classifier logits [labels], or
    for token classification one row per position [n, labels]."""
    return head(model, run(model, token_ids, vq_sites)).numpy().astype(np.float32)


def lm_logits_all(model, token_ids, vq_sites=None):
    """Causal LMs: logits for every position [n, V] (tests)."""
    z = run(model, token_ids, vq_sites)
    w = model.get("lm_head.weight", False)
    if w is None or (model.r["family"] == "llama" and model.r.get("tied")):
        w = model.get(model.emb_name())
    with torch.no_grad():
        return linear(z, w).numpy().astype(np.float32)


def generate(model, token_ids, n_new, stop=None, vq_sites=None):
    """Greedy decoding by full recomputation (argmax ties -> lowest id)."""
    if model.r["classifier"]:
        raise ValueError("--generate needs a causal LM")
    ids = [int(t) for t in token_ids]
    out = []
    for _ in range(n_new):
        if len(ids) >= model.r["max_pos"]:
            break
        nxt = int(np.argmax(forward(model, ids, vq_sites)))
        if stop is not None and nxt in stop:
            break
        ids.append(nxt)
        out.append(nxt)
    return out


def _fmt(x):
    return repr(float(np.float32(x))) if not np.isfinite(x) else str(np.float32(x))


def main(argv=None):
    ap = argparse.ArgumentParser(description="incnn PyTorch reference forward")
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True, help='space separated token ids, e.g. "1 2 3"')
    ap.add_argument("--generate", type=int, default=0, help="append N greedy tokens")
    ap.add_argument("--no-vq", action="store_true", help="skip all VQ sites")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model = load_model(a.model_dir)
    ids = [int(t) for t in a.tokens.split()]
    sites = [] if a.no_vq else None
    logits = forward(model, ids, sites)
    gen = []
    if a.generate:
        gen = generate(model, ids, a.generate, vq_sites=sites)
    if logits.ndim == 2:
        out = ",".join("[%s]" % ",".join(_fmt(v) for v in row) for row in logits)
    else:
        out = ",".join(_fmt(v) for v in logits)
    sys.stdout.write('{"output":[%s],"generated":%s}\n' % (out, json.dumps(gen)))


if __name__ == "__main__":
    main()

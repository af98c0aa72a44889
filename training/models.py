"""Trainable PyTorch models that compute exactly what ``incnn_ref`` computes for a checkpoint.

One ``IncnnModel`` covers both families of docs/checkpoint-format.md (``opt``: pre-LayerNorm,
ReLU/GELU MLP, biases, q scaled after q_proj; ``llama``: RMSNorm, SwiGLU, GQA, no biases), the
three position schemes (``learned`` OPT table with offset 2, ``rope`` HF half-split, ``none``),
causal or bidirectional attention, VQ sites ``attn_out`` / ``block_out`` (training/vq.py), and the
heads (classifier ``score`` with ``last`` / ``mean`` pooling, or causal-LM ``lm_head``).

Parameter names are the checkpoint's tensor names (``state_dict()`` keys such as
``model.decoder.layers.0.self_attn.q_proj.weight``), so export is a rename of the VQ codebooks
only (``vq.<L>_<site>.codebook`` -> ``incnn.vq.<L>.<site>.codebook``). The formulas are
``incnn_ref``'s (see its module doc), batched over ``[B, n]`` with right padding: with causal
attention a padded row can never be seen by a real row, with bidirectional attention padded keys
are masked, and pooling only reads real rows. Dropout (``dropout``) acts only in training mode.

    m = IncnnModel(config)            # config: an HF-style dict (see make_config)
    logits = m(ids, lengths)          # classifier: [B, labels]; LM: [B, n, V]
    m.export("out_dir")               # config.json + model.safetensors (incnn_ckpt)
    m = IncnnModel.from_checkpoint("dir")
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ckpt as ck  # noqa: E402
import incnn_ref as ref  # noqa: E402
import make_random_model as mrm  # noqa: E402
from vq import VQ  # noqa: E402

SITES = ("attn_out", "block_out")


def make_config(family="opt", vocab=2048, hidden=128, layers=2, heads=4, kv_heads=None, ffn=512,
                max_pos=512, position=None, attention="causal", labels=None, pool="last",
                vq="", act="relu", tied=None, window=0, global_every=0, token=False):
    """An HF-style config dict (via make_random_model.make_config). ``labels``: list of class
    names for a classifier (with ``token``: a token classifier), None for a causal LM. ``vq``: ``"L:site:G:K,..."`` or a list of
    site dicts."""
    if not isinstance(vq, str):
        vq = ",".join("%d:%s:%d:%d" % (s["layer"], s["site"], s["groups"], s["codes"])
                      for s in vq)
    a = argparse.Namespace(family=family, vocab=vocab, hidden=hidden, layers=layers, heads=heads,
                           kv_heads=kv_heads, ffn=ffn, max_pos=max_pos, position=position,
                           attention=attention,
                           task=("token_classifier" if token else "classifier") if labels
                           else "lm",
                           labels=len(labels) if labels else 0, pool=pool, act=act,
                           tied=(family == "opt") if tied is None else tied, vq=vq,
                           window=window, global_every=global_every)
    c = mrm.make_config(a)
    if labels:
        c["id2label"] = {str(i): n for i, n in enumerate(labels)}
        c["label2id"] = {n: i for i, n in enumerate(labels)}
    ck.resolved(c)
    return c


def vq_key(layer, site):
    return "%d_%s" % (layer, site)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return ref.rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, r, theta, layer=0):
        super().__init__()
        self.window = ck.window_of(r, layer)
        d, kv = r["hidden"], r["kv_heads"] * r["head_dim"]
        bias = r["family"] == "opt" and r["bias"]
        self.r, self.theta = r, theta
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, kv, bias=bias)
        self.v_proj = nn.Linear(d, kv, bias=bias)
        if r["family"] == "opt":
            self.out_proj = nn.Linear(d, d, bias=bias)
        else:
            self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, key_mask, attn_drop):
        r = self.r
        B, n, _ = x.shape
        H, KV, hd = r["heads"], r["kv_heads"], r["head_dim"]
        q = self.q_proj(x)
        if r["family"] == "opt":
            q = q * (hd ** -0.5)
        k, v = self.k_proj(x), self.v_proj(x)
        q = q.view(B, n, H, hd).transpose(1, 2)  # [B, H, n, hd]
        k = k.view(B, n, KV, hd).transpose(1, 2)
        v = v.view(B, n, KV, hd).transpose(1, 2)
        if r["position"] == "rope":
            cos, sin = ref.rope_tables(n, hd, self.theta)
            q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
        rep = H // KV
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        s = q @ k.transpose(-1, -2)  # [B, H, n, n]
        if r["family"] == "llama":
            s = s / math.sqrt(hd)
        if r["attention"] == "causal":
            s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
        elif key_mask is not None:
            # Padded keys are masked; a padded row still sees itself, so that a window holding
            # only padding gives no NaN (real rows are unaffected: their own key is real).
            visible = key_mask[:, None, None, :] | torch.eye(n, dtype=torch.bool)
            s = s.masked_fill(~visible, float("-inf"))
        if self.window:
            pos = torch.arange(n)
            far = (pos[:, None] - pos[None, :]).abs() >= self.window
            s = s.masked_fill(far, float("-inf"))
        P = torch.softmax(s, dim=-1)
        if attn_drop > 0 and self.training:
            P = F.dropout(P, attn_drop)
        o = (P @ v).transpose(1, 2).reshape(B, n, H * hd)
        return self.out_proj(o) if r["family"] == "opt" else self.o_proj(o)


class OPTLayer(nn.Module):
    def __init__(self, r, theta, layer=0):
        super().__init__()
        d, f, eps = r["hidden"], r["ffn"], r["eps"]
        self.r = r
        self.self_attn = Attention(r, theta, layer)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps, elementwise_affine=True)
        self.fc1 = nn.Linear(d, f, bias=r["bias"])
        self.fc2 = nn.Linear(f, d, bias=r["bias"])
        self.final_layer_norm = nn.LayerNorm(d, eps=eps, elementwise_affine=True)
        if not r["bias"]:  # ref passes bias=None when the tensor is absent
            self.self_attn_layer_norm.bias = None
            self.final_layer_norm.bias = None

    def norm1(self, x):
        return self.self_attn_layer_norm(x)

    def norm2(self, x):
        return self.final_layer_norm(x)

    def mlp(self, z):
        a = self.fc1(z)
        a = F.relu(a) if self.r["act"] == "relu" else 0.5 * a * (1.0 + torch.erf(a / math.sqrt(2.0)))
        return self.fc2(a)


class LlamaMLP(nn.Module):
    def __init__(self, r):
        super().__init__()
        d, f = r["hidden"], r["ffn"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, z):
        g = self.gate_proj(z)
        return self.down_proj(g * torch.sigmoid(g) * self.up_proj(z))


class LlamaLayer(nn.Module):
    def __init__(self, r, theta, layer=0):
        super().__init__()
        self.self_attn = Attention(r, theta, layer)
        self.mlp = LlamaMLP(r)
        self.input_layernorm = RMSNorm(r["hidden"], r["eps"])
        self.post_attention_layernorm = RMSNorm(r["hidden"], r["eps"])

    def norm1(self, x):
        return self.input_layernorm(x)

    def norm2(self, x):
        return self.post_attention_layernorm(x)


class _Container(nn.Module):
    pass


class IncnnModel(nn.Module):
    def __init__(self, config, dropout=0.0, attn_dropout=0.0, vq_kwargs=None, seed=0):
        super().__init__()
        self.config = dict(config)
        r = self.r = ck.resolved(config)
        d = r["hidden"]
        self.dropout, self.attn_dropout = dropout, attn_dropout
        layer_cls = OPTLayer if r["family"] == "opt" else LlamaLayer
        self.model = _Container()
        if r["family"] == "opt":
            dec = self.model.decoder = _Container()
        else:
            dec = self.model
        dec.embed_tokens = nn.Embedding(r["vocab"], d)
        if r["position"] == "learned":
            dec.embed_positions = nn.Embedding(r["max_pos"] + 2, d)
        theta = r["rope_theta"] if r["family"] == "llama" else float(
            config.get("rope_theta", 10000.0))
        dec.layers = nn.ModuleList([layer_cls(r, theta, i) for i in range(r["layers"])])
        if r["family"] == "opt":
            dec.final_layer_norm = nn.LayerNorm(d, eps=r["eps"])
            if not r["bias"]:
                dec.final_layer_norm.bias = None
        else:
            dec.norm = RMSNorm(d, r["eps"])
        self.dec = [dec]  # plain list: not registered twice
        if r["classifier"]:
            self.score = nn.Linear(d, r["labels"], bias=r["token"])
        elif not self._tied():
            self.lm_head = nn.Linear(d, r["vocab"], bias=False)
        self.vq = nn.ModuleDict()
        for i, s in enumerate(r["vq"]):
            self.vq[vq_key(int(s["layer"]), s["site"])] = VQ(
                d, int(s["groups"]), int(s["codes"]), seed=seed * 1000 + i,
                **(vq_kwargs or {}))
        self.reset_parameters(seed)

    # ---------------------------------------------------------------------------------------
    def _tied(self):
        r = self.r
        if r["classifier"]:
            return False
        if r["family"] == "llama":
            return r.get("tied", False)
        return bool(self.config.get("tie_word_embeddings", True))

    def reset_parameters(self, seed=0):
        """GPT-2 style init from a seeded generator: N(0, 0.02) for embeddings and linears,
        output projections scaled by 1/sqrt(2 * layers), zeros for biases, ones for norms."""
        g = torch.Generator().manual_seed(seed)
        L = self.r["layers"]
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif "norm" in name:
                    p.fill_(1.0)
                else:
                    std = 0.02
                    if name.endswith(("out_proj.weight", "o_proj.weight", "fc2.weight",
                                      "down_proj.weight")):
                        std /= math.sqrt(2 * L)
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def vq_modules(self):
        return [(k, m) for k, m in self.vq.items()]

    def set_vq(self, enabled):
        for m in self.vq.values():
            m.enabled = enabled

    # ---------------------------------------------------------------------------------------
    def hidden(self, ids, lengths=None, capture=None):
        """Final-normed hidden states [B, n, d]. ids [B, n] int64; lengths [B] (right padding).
        capture: optional dict receiving ``(layer, site) -> pre-VQ activation [B, n, d]``."""
        r = self.r
        dec = self.dec[0]
        B, n = ids.shape
        if n > r["max_pos"]:
            raise ValueError("%d tokens exceed max_position_embeddings %d" % (n, r["max_pos"]))
        mask = None
        if lengths is not None:
            mask = torch.arange(n)[None, :] < lengths[:, None]
        x = dec.embed_tokens(ids)
        if r["position"] == "learned":
            x = x + dec.embed_positions(torch.arange(n) + 2)[None]
        drop = self.dropout if self.training else 0.0
        for li, layer in enumerate(dec.layers):
            a = layer.self_attn(layer.norm1(x), mask, self.attn_dropout)
            if capture is not None:
                capture[(li, "attn_out")] = a
            k = vq_key(li, "attn_out")
            if k in self.vq:
                a = self.vq[k](a, mask)
            if drop:
                a = F.dropout(a, drop)
            h = x + a
            m = layer.mlp(layer.norm2(h))
            if drop:
                m = F.dropout(m, drop)
            y = h + m
            if capture is not None:
                capture[(li, "block_out")] = y
            k = vq_key(li, "block_out")
            if k in self.vq:
                y = self.vq[k](y, mask)
            x = y
        if r["family"] == "opt":
            return dec.final_layer_norm(x)
        return dec.norm(x)

    def pool(self, z, lengths=None):
        B, n, _ = z.shape
        if lengths is None:
            lengths = torch.full((B,), n, dtype=torch.int64)
        if self.r["pool"] == "last":
            return z[torch.arange(B), lengths - 1]
        mask = (torch.arange(n)[None, :] < lengths[:, None]).to(z.dtype)
        return (z * mask[..., None]).sum(1) / lengths[:, None].to(z.dtype)

    def lm_weight(self):
        return self.dec[0].embed_tokens.weight if self._tied() else self.lm_head.weight

    def forward(self, ids, lengths=None, capture=None):
        z = self.hidden(ids, lengths, capture)
        if self.r["token"]:
            return self.score(z)  # [B, n, labels]
        if self.r["classifier"]:
            return self.score(self.pool(z, lengths))
        return z @ self.lm_weight().t()

    def commit_loss(self):
        return self._vq_sum("last_commit")

    def margin_loss(self):
        return self._vq_sum("last_margin")

    def _vq_sum(self, name):
        tot = None
        for m in self.vq.values():
            if m.enabled:
                tot = getattr(m, name) if tot is None else tot + getattr(m, name)
        return tot if tot is not None else torch.zeros(())

    # ---------------------------------------------------------------------------------------
    def tensors(self):
        """Checkpoint tensors {name: float32 numpy}."""
        out = {}
        for name, t in self.state_dict().items():
            if name.startswith("vq."):
                continue
            out[name] = t.detach().float().numpy().copy()
        for s in self.r["vq"]:
            k = vq_key(int(s["layer"]), s["site"])
            out[ref.vq_name(s)] = self.vq[k].codebook.detach().float().numpy().copy()
        return out

    def export(self, model_dir, metadata=None):
        ck.save_checkpoint(model_dir, self.config, self.tensors(), metadata)

    def load_tensors(self, tensors, strict=True):
        sd = self.state_dict()
        seen = set()
        for name, arr in tensors.items():
            if name.startswith("incnn.vq."):
                _, _, layer, site, _ = name.split(".")
                k = vq_key(int(layer), site)
                if k in self.vq:
                    self.vq[k].codebook.copy_(torch.from_numpy(np.asarray(arr, np.float32)))
                    self.vq[k].ema_sum.copy_(self.vq[k].codebook * self.vq[k].ema_count[..., None])
                    seen.add("vq." + k)
                continue
            if name not in sd:
                if strict:
                    raise KeyError("unexpected tensor %s" % name)
                continue
            with torch.no_grad():
                sd[name].copy_(torch.from_numpy(np.asarray(arr, np.float32)))
            seen.add(name)
        if strict:
            missing = [n for n in sd if not n.startswith("vq.") and n not in seen]
            if missing:
                raise KeyError("missing tensors %s" % missing)

    @classmethod
    def from_checkpoint(cls, model_dir, config=None, **kw):
        """Load a checkpoint; ``config`` may override the stored one (e.g. to add VQ sites,
        whose codebooks then start random)."""
        c, t = ck.load_checkpoint(model_dir)
        m = cls(config or c, **kw)
        m.load_tensors(t, strict=True)
        return m


def batch(seqs, pad=0):
    """Right-pad a list of id lists -> (ids [B, n] int64, lengths [B] int64)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.as_tensor(s, dtype=torch.int64)
    return ids, torch.as_tensor([len(s) for s in seqs], dtype=torch.int64)

"""Trainable grouped vector quantization (VQ) for incnn models.

Semantics (identical to ``incnn_ref.vq_quantize`` and docs/checkpoint-format.md): a row of width
``d`` is split into ``G`` contiguous groups of ``d/G``; group ``g`` snaps to the codeword
``argmin_k sum((x_g - C[g,k])**2)`` of its own codebook ``C[g] [K, d/G]`` (ties -> lowest k), and
the output is the concatenation of the chosen codewords.

Training:
  * straight-through estimator: the forward value is the codeword, the gradient w.r.t. the input
    is the identity (``x + (q - x).detach()``);
  * commitment loss ``mean((x - sg(q))**2)`` (per element, over valid rows), returned in
    :attr:`VQ.last_commit` for the trainer to weight by beta;
  * the codebook is not trained by gradient: it follows an exponential moving average (EMA) of
    the rows assigned to each code (van den Oord et al. 2017, appendix; Laplace-smoothed counts);
  * dead codes (EMA usage below ``dead_frac`` times the group's mean usage per code) are
    restarted at random rows of the current batch (of that group), drawn from the layer's own seeded generator, so the run is
    reproducible and the codebook does not collapse onto a few codes;
  * :meth:`VQ.init_kmeans` initialises the codebook with k-means (k-means++ seeding) on sample
    activations, as when inserting VQ into a trained dense model.

In training mode the nearest code is found with the fast expanded form
``|x|^2 - 2 x.c + |c|^2`` (a matmul); in eval mode with exactly the reference's float32 formula
(``incnn_ref.vq_quantize``) so that exported checkpoints reproduce the codes bit for bit.
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ref as ref  # noqa: E402


def nearest_codes(x, codebook):
    """Reference-exact nearest codes: x [N, d], codebook [G, K, d/G] -> codes int64 [N, G]."""
    return ref.vq_quantize(x, codebook)[1]


def nearest_codes_fast(x, codebook):
    """Expanded-form nearest codes (for training; may differ from the exact form on near-ties).
    Ties of the computed distances go to the lowest index."""
    N, d = x.shape
    G, K, dg = codebook.shape
    xg = x.reshape(N, G, dg).transpose(0, 1)  # [G, N, dg]
    dist = ((xg * xg).sum(-1, keepdim=True) - 2.0 * torch.bmm(xg, codebook.transpose(1, 2))
            + (codebook * codebook).sum(-1)[:, None, :])  # [G, N, K]
    return first_argmin(dist).transpose(0, 1)


def first_argmin(dist):
    """argmin over the last axis, ties -> lowest index (explicitly, not relying on torch)."""
    K = dist.shape[-1]
    m = dist.min(-1, keepdim=True).values
    ar = torch.arange(K, dtype=torch.int64, device=dist.device)
    return torch.where(dist == m, ar, torch.full_like(ar, K)).min(-1).values


def gather_codes(codebook, codes):
    """codes [N, G] -> quantized rows [N, d]."""
    G = codebook.shape[0]
    return codebook[torch.arange(G)[None, :], codes].reshape(codes.shape[0], -1)


class VQ(nn.Module):
    def __init__(self, dim, groups, codes, decay=0.99, eps=1e-5, dead_frac=0.03,
                 restart_every=1, seed=0, margin=0.0):
        super().__init__()
        if dim % groups:
            raise ValueError("dim %d not divisible by groups %d" % (dim, groups))
        self.dim, self.groups, self.codes = dim, groups, codes
        self.dg = dim // groups
        self.decay, self.eps = decay, eps
        self.dead_frac = dead_frac
        self.restart_every = restart_every
        g = torch.Generator().manual_seed(seed)
        init = torch.randn(groups, codes, self.dg, generator=g)
        self.register_buffer("codebook", init)
        self.register_buffer("ema_count", torch.ones(groups, codes))
        self.register_buffer("ema_sum", init.clone())
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.enabled = True
        self.ema = True  # EMA codebook updates in training mode
        self.last_commit = torch.zeros(())
        self.margin = margin  # target gap / codeword distance (0: no margin loss)
        self.last_margin = torch.zeros(())
        self.last_codes = None
        self.restarts = 0  # dead-code restarts so far (for logging)

    def extra_repr(self):
        return "dim=%d, groups=%d, codes=%d" % (self.dim, self.groups, self.codes)

    # ---------------------------------------------------------------------------------------
    def forward(self, x, mask=None):
        """x [..., d]; mask: optional bool [...] of valid rows (padding rows are quantized but
        do not contribute to the loss or the EMA). Returns the quantized tensor (STE)."""
        if not self.enabled:
            self.last_commit = x.new_zeros(())
            self.last_margin = x.new_zeros(())
            return x
        shape = x.shape
        flat = x.reshape(-1, self.dim)
        with torch.no_grad():
            if self.training:
                codes = nearest_codes_fast(flat.detach(), self.codebook)
            else:
                codes = nearest_codes(flat.detach(), self.codebook)
        q = gather_codes(self.codebook, codes)
        valid = None if mask is None else mask.reshape(-1)
        diff = (flat - q.detach()) ** 2
        if valid is not None:
            nv = valid.sum().clamp(min=1)
            self.last_commit = (diff.sum(-1) * valid).sum() / (nv * self.dim)
        else:
            self.last_commit = diff.mean()
        self.last_margin = self._margin_loss(flat, valid)
        self.last_codes = codes
        if self.training and self.ema:
            rows = flat.detach() if valid is None else flat.detach()[valid]
            self._ema_update(rows, codes if valid is None else codes[valid])
        if torch.is_grad_enabled() and flat.requires_grad:
            out = flat + (q - flat).detach()  # straight-through: value ~q, gradient identity
        else:
            out = q  # bit-exact codewords (x + (q - x) is not always q in float)
        return out.reshape(shape)

    def _margin_loss(self, flat, valid):
        """Mean over valid rows and groups of relu(margin - gap / |c2 - c1|), with gap =
        |x - c2| - |x - c1| for the nearest codeword c1 and the second nearest c2: pushes rows
        away from the boundaries between codes (the runtime's certificate budget is gap / 2),
        relative to the codewords' spacing so that scaling x and the codebook together does not
        satisfy it."""
        if self.margin <= 0 or not (torch.is_grad_enabled() and flat.requires_grad):
            return flat.new_zeros(())
        G, dg = self.groups, self.dg
        xg = flat.reshape(-1, G, 1, dg)
        cb = self.codebook.detach()
        dist = ((xg - cb[None]) ** 2).sum(-1).clamp_min(1e-12).sqrt()  # [N, G, K]
        two = dist.topk(2, dim=-1, largest=False)
        gap = two.values[..., 1] - two.values[..., 0]  # [N, G]
        c1 = cb[torch.arange(G)[None, :], two.indices[..., 0]]
        c2 = cb[torch.arange(G)[None, :], two.indices[..., 1]]
        spacing = (c2 - c1).norm(dim=-1).clamp_min(1e-6)
        pen = F.relu(self.margin - gap / spacing).mean(-1)  # [N]
        if valid is not None:
            return (pen * valid).sum() / valid.sum().clamp(min=1)
        return pen.mean()

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _ema_update(self, rows, codes):
        if rows.shape[0] == 0:
            return
        G, K, dg = self.groups, self.codes, self.dg
        xg = rows.reshape(-1, G, dg).transpose(0, 1)  # [G, N, dg]
        onehot = torch.zeros(G, rows.shape[0], K)
        onehot.scatter_(2, codes.t().unsqueeze(-1), 1.0)
        count = onehot.sum(1)  # [G, K]
        ssum = torch.bmm(onehot.transpose(1, 2), xg)  # [G, K, dg]
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(ssum, alpha=1 - self.decay)
        n = self.ema_count.sum(1, keepdim=True)
        smoothed = (self.ema_count + self.eps) / (n + K * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        self.steps += 1
        if self.restart_every and int(self.steps) % self.restart_every == 0:
            self._restart_dead(xg)

    @torch.no_grad()
    def _restart_dead(self, xg):
        """Codes whose EMA usage fell below ``dead_frac`` of the group's mean usage are moved
        onto random rows of the batch; their EMA statistics restart at twice the threshold."""
        N = xg.shape[1]
        thr = self._threshold()
        for g in range(self.groups):
            dead = (self.ema_count[g] < thr[g]).nonzero().flatten()
            if dead.numel() == 0:
                continue
            pick = torch.randint(0, N, (dead.numel(),), generator=self.gen)
            v = xg[g, pick]
            c = 2.0 * float(thr[g])
            self.codebook[g, dead] = v
            self.ema_sum[g, dead] = v * c
            self.ema_count[g, dead] = c
            self.restarts += int(dead.numel())

    def _threshold(self):
        return self.dead_frac * self.ema_count.sum(1) / self.codes  # [G]

    @torch.no_grad()
    def init_kmeans(self, rows, iters=10, batch_rows=None):
        """k-means (k-means++ seeding, Lloyd iterations) of each group on ``rows [N, d]``;
        sets the codebook and resets the EMA statistics to the cluster sizes (scaled to
        ``batch_rows`` rows per training step, default N)."""
        rows = rows.reshape(-1, self.dim).float()
        N = rows.shape[0]
        G, K, dg = self.groups, self.codes, self.dg
        for g in range(G):
            X = rows[:, g * dg:(g + 1) * dg].double()
            C = torch.empty(K, dg, dtype=torch.float64)
            C[0] = X[torch.randint(0, N, (1,), generator=self.gen)]
            d2 = ((X - C[0]) ** 2).sum(1)
            for k in range(1, K):
                tot = float(d2.sum())
                if tot > 0:
                    j = torch.multinomial((d2 / tot).float(), 1, generator=self.gen)
                else:
                    j = torch.randint(0, N, (1,), generator=self.gen)
                C[k] = X[j]
                d2 = torch.minimum(d2, ((X - C[k]) ** 2).sum(1))
            for _ in range(iters):
                dist = (X * X).sum(1, keepdim=True) - 2 * X @ C.t() + (C * C).sum(1)[None]
                a = first_argmin(dist)
                cnt = torch.bincount(a, minlength=K).double()
                s = torch.zeros(K, dg, dtype=torch.float64).index_add_(0, a, X)
                used = cnt > 0
                C[used] = s[used] / cnt[used, None]
                if (~used).any():  # re-seed empty clusters at the worst-served points
                    far = dist.min(1).values.argsort(descending=True)[: int((~used).sum())]
                    C[~used] = X[far]
            dist = (X * X).sum(1, keepdim=True) - 2 * X @ C.t() + (C * C).sum(1)[None]
            cnt = torch.bincount(first_argmin(dist), minlength=K).double()
            self.codebook[g] = C.float()
            scale = (batch_rows or N) / float(N)
            self.ema_count[g] = (cnt * scale).float()
            self.ema_sum[g] = self.codebook[g] * self.ema_count[g, :, None]

    def usage(self):
        """Fraction of codes per group whose EMA usage is at or above the dead threshold."""
        return (self.ema_count >= self._threshold()[:, None]).float().mean(1)

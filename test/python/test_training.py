"""Tests of the training code: the VQ layer (training/vq.py), the trainable models
(training/models.py) against the reference forward (incnn_ref) after export, and determinism.

Run:  /usr/bin/python3 -m unittest discover -s test/python
"""

import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))

import torch  # noqa: E402

import incnn_ckpt as ck  # noqa: E402
import incnn_ref as ref  # noqa: E402
import models as M  # noqa: E402
import vq as V  # noqa: E402

torch.set_num_threads(1)


def brute_codes(x, cb):
    """Plain-python nearest codes (float64 distances, ties -> lowest index)."""
    x = np.asarray(x, np.float64)
    cb = np.asarray(cb, np.float64)
    G, K, dg = cb.shape
    out = np.zeros((x.shape[0], G), np.int64)
    for i in range(x.shape[0]):
        for g in range(G):
            d = ((x[i, g * dg:(g + 1) * dg][None] - cb[g]) ** 2).sum(1)
            out[i, g] = int(np.flatnonzero(d == d.min())[0])
    return out


class VQLayerTest(unittest.TestCase):
    def test_nearest_matches_reference_and_brute_force(self):
        torch.manual_seed(0)
        vq = V.VQ(12, 3, 7, seed=3)
        x = torch.randn(50, 12) * 1.5
        vq.eval()
        out = vq(x)
        codes = vq.last_codes
        self.assertTrue(torch.equal(codes, ref.vq_quantize(x, vq.codebook)[1]))
        np.testing.assert_array_equal(codes.numpy(), brute_codes(x.numpy(), vq.codebook.numpy()))
        self.assertTrue(torch.equal(out, ref.vq_quantize(x, vq.codebook)[0]))
        # the fast (training) form agrees away from near-ties
        self.assertTrue(torch.equal(V.nearest_codes_fast(x, vq.codebook), codes))

    def test_ties_go_to_lowest_index(self):
        vq = V.VQ(2, 1, 4)
        with torch.no_grad():
            vq.codebook.copy_(torch.tensor([[[5.0, 5.0], [1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]]]))
        x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        for training in (False, True):
            vq.train(training)
            vq.ema = False
            vq(x)
            # (0,0): codes 1, 2, 3 equidistant -> 1; (1,0): duplicates 1 and 3 -> 1; (0,1): 1,2,3 -> 1
            self.assertEqual(vq.last_codes[:, 0].tolist(), [1, 1, 1])
        self.assertEqual(V.first_argmin(torch.tensor([[2.0, 1.0, 1.0, 3.0]])).tolist(), [1])

    def test_straight_through_gradient_and_commitment(self):
        vq = V.VQ(8, 2, 5, seed=1)
        vq.ema = False
        x = torch.randn(6, 8, requires_grad=True)
        w = torch.randn(6, 8)
        out = vq(x)
        q = ref.vq_quantize(x.detach(), vq.codebook)[0]
        self.assertTrue(torch.allclose(out, q, atol=1e-6))
        (out * w).sum().backward()
        self.assertTrue(torch.equal(x.grad, w))  # identity gradient
        x.grad = None
        vq(x)
        vq.last_commit.backward()
        expect = 2.0 * (x.detach() - q) / x.numel()
        self.assertTrue(torch.allclose(x.grad, expect, atol=1e-6))

    def test_mask_excludes_padding_rows(self):
        vq = V.VQ(4, 1, 3, seed=2)
        vq.ema = False
        x = torch.randn(2, 5, 4)
        mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
        vq(x, mask)
        c1 = vq.last_commit
        x2 = x.clone()
        x2[1, 2:] = 1000.0  # garbage in padding rows must not change the loss
        vq(x2, mask)
        self.assertTrue(torch.allclose(c1, vq.last_commit))

    def test_ema_update(self):
        vq = V.VQ(2, 1, 2, decay=0.5, eps=0.0, dead_frac=0.0)
        with torch.no_grad():
            vq.codebook.copy_(torch.tensor([[[0.0, 0.0], [10.0, 10.0]]]))
            vq.ema_sum.copy_(vq.codebook * 1.0)
            vq.ema_count.fill_(1.0)
        vq.train()
        x = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]])
        vq(x)
        # counts: 0.5*1 + 0.5*[2, 1] = [1.5, 1.0]; sums: 0.5*C + 0.5*[(4,2), (9,9)]
        self.assertTrue(torch.allclose(vq.ema_count, torch.tensor([[1.5, 1.0]])))
        want = torch.tensor([[[2.0 / 1.5, 1.0 / 1.5], [9.5, 9.5]]])
        self.assertTrue(torch.allclose(vq.codebook, want, atol=1e-6), vq.codebook)

    def test_dead_code_restart(self):
        torch.manual_seed(0)
        vq = V.VQ(4, 2, 8, decay=0.5, dead_frac=0.1, seed=5)
        with torch.no_grad():
            vq.codebook[:, 3] = 1e6  # unreachable code in both groups
            vq.ema_sum.copy_(vq.codebook)
        vq.train()
        x = torch.randn(64, 4)
        for _ in range(6):
            vq(x)
        self.assertGreater(vq.restarts, 0)
        self.assertTrue(bool((vq.codebook.abs() < 100).all()), "dead code was not restarted")
        # restarted codes sit on (EMA-smoothed) data, and the layer keeps most codes alive
        self.assertGreaterEqual(float(vq.usage().min()), 0.5)

    def test_no_collapse_under_training(self):
        torch.manual_seed(0)
        vq = V.VQ(4, 1, 16, decay=0.9, seed=1)
        with torch.no_grad():  # start collapsed: all codes in one far corner
            vq.codebook.copy_(torch.full((1, 16, 4), 3.0) + 0.01 * torch.randn(1, 16, 4))
            vq.ema_sum.copy_(vq.codebook)
        vq.train()
        for _ in range(100):
            vq(torch.randn(256, 4))
        vq.eval()
        vq(torch.randn(2000, 4))
        used = torch.unique(vq.last_codes).numel()
        self.assertGreaterEqual(used, 14)

    def test_kmeans_init_is_seeded(self):
        x = torch.randn(500, 6)
        a = V.VQ(6, 2, 8, seed=7)
        b = V.VQ(6, 2, 8, seed=7)
        a.init_kmeans(x)
        b.init_kmeans(x)
        self.assertTrue(torch.equal(a.codebook, b.codebook))
        self.assertEqual(len(torch.unique(a.codebook[0], dim=0)), 8)
        # k-means should beat random data points as codes
        a.eval()
        a(x)
        self.assertLess(float(a.last_commit), 0.9 * float(x.var()))


# ----------------------------------------------------------------------------------------------
def _perturb(model, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


class ExportEquivalenceTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="incnn_train_test_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, family, position, labels, pool, vq, attention="causal", kv_heads=None,
              token=False, window=0):
        c = M.make_config(family, vocab=41, hidden=32, layers=2, heads=4, kv_heads=kv_heads,
                          ffn=48, max_pos=24, position=position, attention=attention,
                          labels=labels, pool=pool, vq=vq, token=token, window=window)
        m = M.IncnnModel(c, dropout=0.1, seed=4)
        _perturb(m, 1)
        rng = np.random.RandomState(0)
        seqs = [list(rng.randint(0, 41, n)) for n in (24, 9, 1)]
        ids, ln = M.batch(seqs)
        m.train()
        m(ids, ln)  # a training step moves the EMA codebooks (and uses dropout)
        if m.r["vq"]:
            s0 = m.r["vq"][0]
            m.vq[M.vq_key(s0["layer"], s0["site"])].init_kmeans(torch.randn(200, 32))
        m.eval()
        with torch.no_grad():
            out = m(ids, ln)
        d = os.path.join(self.tmp, "%s_%s_%s" % (family, position, pool))
        m.export(d)
        self.assertEqual(ck.load_config(d), c)
        rm = ref.load_model(d)
        for b, s in enumerate(seqs):
            if token:  # one row of logits per token
                want = ref.forward(rm, s)
                got = out[b, :len(s)].numpy()
            elif labels:
                want = ref.forward(rm, s)
                got = out[b].numpy()
            else:
                want = ref.lm_logits_all(rm, s)
                got = out[b, :len(s)].numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # and back: a reloaded model computes the same
        m2 = M.IncnnModel.from_checkpoint(d)
        m2.eval()
        with torch.no_grad():
            np.testing.assert_array_equal(m2(ids, ln).numpy(), out.numpy())

    def test_opt(self):
        for pos in ("learned", "rope", "none"):
            self.check("opt", pos, ["a", "b", "c"], "mean", "0:attn_out:4:8,1:attn_out:2:16")
            self.check("opt", pos, ["a", "b"], "last", "1:block_out:4:8")
            self.check("opt", pos, None, "last", "0:attn_out:8:8")
        self.check("opt", "none", ["a", "b"], "mean", "", attention="bidirectional")

    def test_llama(self):
        for pos in ("rope", "none"):
            self.check("llama", pos, ["a", "b", "c"], "last", "0:attn_out:4:8,1:block_out:2:8",
                       kv_heads=2)
            self.check("llama", pos, None, "last", "1:attn_out:2:8", kv_heads=4)
        self.check("llama", "rope", ["x", "y"], "mean", "", attention="bidirectional",
                   kv_heads=1)

    def test_llama_token_classifier(self):
        # The bundled tagger's shape: causal NoPE with a window, and a bidirectional variant
        # (padded rows must not poison real ones).
        self.check("llama", "none", ["O", "ERROR"], "last", "0:attn_out:1:8,1:attn_out:1:8",
                   token=True, window=5)
        self.check("llama", "rope", ["O", "ERROR"], "last", "0:attn_out:1:8",
                   attention="bidirectional", token=True, window=4)

    def test_padding_does_not_change_results(self):
        c = M.make_config("opt", vocab=30, hidden=16, layers=1, heads=2, ffn=32, max_pos=20,
                          position="none", labels=["a", "b"], pool="mean", vq="0:attn_out:2:4")
        m = M.IncnnModel(c, seed=2)
        _perturb(m, 3)
        m.eval()
        s = [3, 4, 5, 6, 7]
        with torch.no_grad():
            alone = m(*M.batch([s]))[0]
            padded = m(*M.batch([s, list(range(20))]))[0]
        np.testing.assert_allclose(alone.numpy(), padded.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
class DeterminismTest(unittest.TestCase):
    def _train(self, seed):
        torch.manual_seed(seed)
        c = M.make_config("opt", vocab=30, hidden=16, layers=2, heads=2, ffn=32, max_pos=16,
                          position="none", labels=["a", "b"], pool="mean",
                          vq="0:attn_out:2:8,1:attn_out:2:8")
        m = M.IncnnModel(c, dropout=0.1, seed=seed)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
        rng = np.random.RandomState(seed)
        m.train()
        for _ in range(5):
            ids, ln = M.batch([list(rng.randint(0, 30, rng.randint(1, 17))) for _ in range(4)])
            y = torch.as_tensor(rng.randint(0, 2, 4))
            loss = torch.nn.functional.cross_entropy(m(ids, ln), y) + 0.25 * m.commit_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return m.tensors()

    def test_same_seed_same_weights(self):
        a, b, c = self._train(1), self._train(1), self._train(2)
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        self.assertFalse(all(np.array_equal(a[k], c[k]) for k in a))


@unittest.skipUnless(os.path.isdir(os.path.join(SHARED_DATA, "fine_foods"))
                     and shutil.which("spm_train") and shutil.which("spm_encode"),
                     "needs ../shared/data/fine_foods and Debian's sentencepiece CLIs")
class TrainClassifierSmokeTest(unittest.TestCase):
    def test_tiny_run_is_reproducible(self):
        import train_classifier as tc
        tmp = tempfile.mkdtemp(prefix="incnn_train_test_")
        try:
            outs = []
            cache = os.path.join(tmp, "dense.pt")
            # run 0 plain, run 1 saves its dense phase, run 2 loads it: all three identical
            for i in range(3):
                out = os.path.join(tmp, "m%d" % i)
                m = tc.main(["--task", "foods", "--out", out, "--vocab-size", "500",
                             "--hidden", "16",
                             "--layers", "1", "--heads", "2", "--ffn", "32", "--ctx", "24",
                             "--epochs", "1", "--vq", "attn_out", "--groups", "2", "--codes", "8",
                             "--vq-epochs", "1", "--batch", "64", "--kmeans-rows", "2000",
                             "--eval-every", "0", "--seed", "3"]
                            + (["--dense-cache", cache] if i else []))
                self.assertEqual(m.get("dense_cache"), [None, "saved", "loaded"][i])
                outs.append(out)
            for f in ("config.json", "model.safetensors", "tokenizer.model"):
                for o in outs[1:]:
                    with open(os.path.join(outs[0], f), "rb") as a, \
                            open(os.path.join(o, f), "rb") as b:
                        self.assertEqual(a.read(), b.read(), f)
            r = ck.resolved(ck.load_config(outs[0]))
            self.assertEqual(r["max_pos"], 24)
            self.assertEqual([s["site"] for s in r["vq"]], ["attn_out"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()


class TyposTest(unittest.TestCase):
    def test_spans_name_exactly_the_changed_words(self):
        import random
        import typos
        text = ("The government will receive their package because it is necessary to believe "
                "in the system until tomorrow, and then the work is done. ") * 20
        rng = random.Random(5)
        kinds = set()
        for _ in range(30):
            bad, spans = typos.corrupt(text, rng, rate=0.2)
            words_bad = typos.words(bad)
            self.assertTrue(spans)
            # Every span is a whole word of the new text; outside them the words are the
            # original ones, in order (a doubled word adds one).
            starts = {s for s, _ in words_bad}
            for s, e in spans:
                self.assertIn(s, starts)
                self.assertIn((s, e), words_bad)
            kept = [bad[s:e] for s, e in words_bad if (s, e) not in spans]
            orig = [text[s:e] for s, e in typos.words(text)]
            self.assertLessEqual(len(kept), len(orig))
            it = iter(orig)
            self.assertTrue(all(w in it for w in kept))  # a subsequence
            for s, e in spans:
                w = bad[s:e]
                if w.lower() in typos.CONFUSIONS.values():
                    kinds.add("confusion")
                elif w.lower() in typos.MISSPELLINGS.values():
                    kinds.add("misspelling")
                elif bad[max(0, s - len(w) - 1):s - 1] == w:
                    kinds.add("doubled")
                else:
                    kinds.add("typo")
        self.assertEqual(kinds, {"confusion", "misspelling", "doubled", "typo"})

    def test_metrics(self):
        import typos
        c = {"tp": 0, "fp": 0, "fn": 0}
        typos.score(c, {1, 2, 3}, {2, 3, 4, 5})
        m = typos.metrics(c)
        self.assertEqual((m["tp"], m["fp"], m["fn"]), (2, 2, 1))
        self.assertAlmostEqual(m["precision"], 0.5)
        self.assertAlmostEqual(m["recall"], 2 / 3)
        self.assertAlmostEqual(m["f0.5"], 1.25 * 0.5 * (2 / 3) / (0.25 * 0.5 + 2 / 3))

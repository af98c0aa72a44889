"""Tests of training/ (checkpoint I/O, llama2.c conversion, the PyTorch reference, random models).

Run:  /usr/bin/python3 -m unittest discover -s test/python
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
STORIES = os.path.join(SHARED, "models", "stories260K")
GREEDY_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stories260K_greedy.json")
EXPECTED_TEXT = ("Once upon a time, there was a little girl named Lily. "
                 "She loved to play outside in the park.")

import torch  # noqa: E402

import incnn_ckpt as ck  # noqa: E402
import incnn_ref as ref  # noqa: E402
import llama2c_to_hf as l2h  # noqa: E402
import make_random_model as mrm  # noqa: E402

torch.set_num_threads(1)


class TmpDirCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="incnn_test_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
class SafetensorsTest(TmpDirCase):
    def test_round_trip(self):
        rng = np.random.RandomState(0)
        t = {
            "a.weight": rng.randn(3, 5).astype(np.float32),
            "b": rng.randn(7).astype(np.float16),
            "c.ids": np.arange(6, dtype=np.int64).reshape(2, 3),
            "scalar": np.array(2.5, dtype=np.float32),
            "empty": np.zeros((0, 4), dtype=np.float32),
        }
        p = os.path.join(self.tmp, "x.safetensors")
        ck.save_safetensors(p, t, metadata={"k": "v"})
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        self.assertEqual(n % 8, 0)
        self.assertEqual(header["a.weight"]["dtype"], "F32")
        self.assertEqual(header["a.weight"]["shape"], [3, 5])
        self.assertEqual(header["__metadata__"], {"format": "pt", "k": "v"})
        back = ck.load_safetensors(p, widen=False)
        self.assertEqual(set(back), set(t))
        for k in t:
            self.assertEqual(back[k].dtype, t[k].dtype, k)
            np.testing.assert_array_equal(back[k], t[k])
        widened = ck.load_safetensors(p)
        self.assertEqual(widened["b"].dtype, np.float32)
        np.testing.assert_array_equal(widened["b"], t["b"].astype(np.float32))
        self.assertEqual(ck.load_safetensors_metadata(p)["k"], "v")

    def test_bf16_read(self):
        x = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
        raw = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
        hdr = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
        p = os.path.join(self.tmp, "bf.safetensors")
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)) + hdr + raw)
        np.testing.assert_array_equal(ck.load_safetensors(p)["x"], x)


# ----------------------------------------------------------------------------------------------
def write_llama2c(path, dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared, rng):
    """A random llama2.c legacy checkpoint; returns the weights (float32 numpy)."""
    hd = dim // heads
    kv = kv_heads * hd
    w = {
        "token_embedding": rng.normal(0, 0.5, (vocab, dim)),
        "rms_att": 1 + rng.normal(0, 0.1, (layers, dim)),
        "wq": rng.normal(0, dim ** -0.5, (layers, dim, dim)),
        "wk": rng.normal(0, dim ** -0.5, (layers, kv, dim)),
        "wv": rng.normal(0, dim ** -0.5, (layers, kv, dim)),
        "wo": rng.normal(0, dim ** -0.5, (layers, dim, dim)),
        "rms_ffn": 1 + rng.normal(0, 0.1, (layers, dim)),
        "w1": rng.normal(0, dim ** -0.5, (layers, hidden, dim)),
        "w2": rng.normal(0, hidden ** -0.5, (layers, dim, hidden)),
        "w3": rng.normal(0, dim ** -0.5, (layers, hidden, dim)),
        "rms_final": 1 + rng.normal(0, 0.1, (dim,)),
    }
    freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2)[: hd // 2] / hd))
    ang = np.outer(np.arange(seq_len), freqs)
    w["freq_cis_real"], w["freq_cis_imag"] = np.cos(ang), np.sin(ang)
    if not shared:
        w["wcls"] = rng.normal(0, 0.5, (vocab, dim))
    w = {k: v.astype(np.float32) for k, v in w.items()}
    order = ["token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3",
             "rms_final", "freq_cis_real", "freq_cis_imag"] + ([] if shared else ["wcls"])
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, layers, heads, kv_heads,
                            vocab if shared else -vocab, seq_len))
        for k in order:
            f.write(w[k].astype("<f4").tobytes())
    return w


def llama2c_forward(w, heads, kv_heads, tokens, shared):
    """llama2.c run.c's forward (interleaved rotary, KV cache), in float64; logits [n, V]."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    L, dim = w["rms_att"].shape
    hs = dim // heads
    kv_mul = heads // kv_heads
    kv_dim = kv_heads * hs

    def rmsnorm(x, g):
        return g * (x / np.sqrt((x * x).mean() + 1e-5))

    kc = np.zeros((L, len(tokens), kv_dim))
    vc = np.zeros((L, len(tokens), kv_dim))
    out = []
    for pos, tok in enumerate(tokens):
        x = w["token_embedding"][tok].copy()
        for l in range(L):
            xb = rmsnorm(x, w["rms_att"][l])
            q = w["wq"][l] @ xb
            k = w["wk"][l] @ xb
            v = w["wv"][l] @ xb
            for i in range(0, dim, 2):
                fr = 1.0 / 10000.0 ** ((i % hs) / hs)
                c, s = np.cos(pos * fr), np.sin(pos * fr)
                for vec in ((q, k) if i < kv_dim else (q,)):
                    v0, v1 = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = v0 * c - v1 * s, v0 * s + v1 * c
            kc[l, pos], vc[l, pos] = k, v
            att_out = np.zeros(dim)
            for h in range(heads):
                kh = (h // kv_mul) * hs
                sc = kc[l, :pos + 1, kh:kh + hs] @ q[h * hs:(h + 1) * hs] / np.sqrt(hs)
                sc = np.exp(sc - sc.max())
                sc /= sc.sum()
                att_out[h * hs:(h + 1) * hs] = sc @ vc[l, :pos + 1, kh:kh + hs]
            x = x + w["wo"][l] @ att_out
            xb = rmsnorm(x, w["rms_ffn"][l])
            h1 = w["w1"][l] @ xb
            h3 = w["w3"][l] @ xb
            x = x + w["w2"][l] @ (h1 / (1 + np.exp(-h1)) * h3)
        x = rmsnorm(x, w["rms_final"])
        out.append((w["token_embedding"] if shared else w["wcls"]) @ x)
    return np.array(out)


class Llama2cConversionTest(TmpDirCase):
    def check(self, shared, heads, kv_heads, seed):
        rng = np.random.RandomState(seed)
        binp = os.path.join(self.tmp, "m.bin")
        w = write_llama2c(binp, dim=32, hidden=48, layers=2, heads=heads, kv_heads=kv_heads,
                          vocab=50, seq_len=16, shared=shared, rng=rng)
        out = os.path.join(self.tmp, "hf")
        cfg = l2h.convert(binp, None, out)
        self.assertEqual(cfg["tie_word_embeddings"], shared)
        self.assertEqual(cfg["max_position_embeddings"], 16)
        self.assertEqual(cfg["num_key_value_heads"], kv_heads)
        model = ref.load_model(out)
        self.assertEqual("lm_head.weight" in model.w, not shared)
        tokens = [1] + list(rng.randint(0, 50, size=12))
        want = llama2c_forward(w, heads, kv_heads, tokens, shared)
        got = ref.lm_logits_all(model, tokens)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ref.forward(model, tokens), want[-1], rtol=1e-5, atol=1e-5)

    def test_tied_gqa(self):
        self.check(shared=True, heads=4, kv_heads=2, seed=1)

    def test_untied_mha(self):
        self.check(shared=False, heads=4, kv_heads=4, seed=2)

    def test_permute_is_hf_permute(self):
        w = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(16, 3)
        hf = w.view(2, 16 // 2 // 2, 2, 3).transpose(1, 2).reshape(16, 3)
        np.testing.assert_array_equal(l2h.permute_rotary(w.numpy(), 2), hf.numpy())


def llama2c_encode(vocab, scores, text):
    """llama2.c run.c's BPE encode (dummy prefix, byte fallback +3, best-score merges)."""
    index = {t: i for i, t in enumerate(vocab)}
    ids = []
    if text:
        ids.append(index[b" "])
    for ch in text:
        b = ch.encode("utf-8")
        if b in index:
            ids.append(index[b])
        else:
            ids.extend(x + 3 for x in b)
    while True:
        best, best_i, best_id = -1e10, -1, -1
        for i in range(len(ids) - 1):
            j = index.get(vocab[ids[i]] + vocab[ids[i + 1]])
            if j is not None and scores[j] > best:
                best, best_i, best_id = scores[j], i, j
        if best_i < 0:
            return ids
        ids[best_i:best_i + 2] = [best_id]


@unittest.skipUnless(os.path.isdir(STORIES), "skipped: %s absent" % STORIES)
class Stories260KTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="incnn_s260_")
        l2h.convert(os.path.join(STORIES, "stories260K.bin"),
                    os.path.join(STORIES, "tok512.bin"), cls.tmp)
        cls.model = ref.load_model(cls.tmp)
        cls.tok = os.path.join(cls.tmp, "tokenizer.model")
        cls.pieces = ck.read_spm_pieces(cls.tok)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_config(self):
        c = self.model.config
        self.assertEqual((c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                          c["num_attention_heads"], c["num_key_value_heads"], c["vocab_size"]),
                         (64, 172, 5, 8, 4, 512))
        self.assertTrue(c["tie_word_embeddings"])
        self.assertEqual(c["max_position_embeddings"], 512)

    def test_greedy_from_bos(self):
        gen = ref.generate(self.model, [1], 60)
        text = ck.spm_decode(self.pieces, gen)
        self.assertTrue(text.startswith(EXPECTED_TEXT), text)
        if os.path.exists(GREEDY_JSON):
            with open(GREEDY_JSON) as f:
                saved = json.load(f)
            self.assertEqual(gen, saved["ids"])

    def test_tokenizer_pieces(self):
        p = self.pieces
        self.assertEqual(len(p), 512)
        self.assertEqual(p[0], ("<unk>", 0.0, ck.PIECE_UNKNOWN))
        self.assertEqual(p[1][::2], ("<s>", ck.PIECE_CONTROL))
        self.assertEqual(p[2][::2], ("</s>", ck.PIECE_CONTROL))
        self.assertEqual(p[3][::2], ("<0x00>", ck.PIECE_BYTE))
        self.assertEqual(p[258][::2], ("<0xFF>", ck.PIECE_BYTE))
        self.assertEqual(p[259][::2], ("\u2581t", ck.PIECE_NORMAL))
        self.assertEqual(len(set(x[0] for x in p)), 512)

    def test_encode_matches_llama2c(self):
        toks = l2h.read_llama2c_tokenizer(os.path.join(STORIES, "tok512.bin"), 512)
        vocab = [t for t, _ in toks]
        scores = [s for _, s in toks]
        want = llama2c_encode(vocab, scores, "Once upon a time")
        self.assertEqual(want, [403, 407, 261, 378])
        texts = ["Once upon a time", "The cat sat on the mat. It was happy!", "Tom said: 42"]
        spm_encode = shutil.which("spm_encode")
        try:
            import sentencepiece as spm  # optional
        except ImportError:
            spm = None
        if spm_encode is None and spm is None:
            self.skipTest("neither spm_encode nor python3-sentencepiece is installed")
        for t in texts:
            want = llama2c_encode(vocab, scores, t)
            if spm_encode:
                got = subprocess.run([spm_encode, "--model=" + self.tok, "--output_format=id"],
                                     input=t + "\n", capture_output=True, text=True, check=True)
                self.assertEqual([int(x) for x in got.stdout.split()], want, t)
            if spm is not None:
                sp = spm.SentencePieceProcessor(model_file=self.tok)
                self.assertEqual(sp.encode(t), want, t)
                self.assertEqual(sp.decode(want), t)
                self.assertEqual((sp.bos_id(), sp.eos_id(), sp.unk_id(), sp.pad_id()),
                                 (1, 2, 0, -1))
            self.assertEqual(ck.spm_decode(self.pieces, want), t)

    def test_spm_decode_cli(self):
        spm_decode = shutil.which("spm_decode")
        if spm_decode is None:
            self.skipTest("spm_decode not installed")
        if not os.path.exists(GREEDY_JSON):
            self.skipTest("no saved greedy ids")
        with open(GREEDY_JSON) as f:
            ids = json.load(f)["ids"]
        got = subprocess.run([spm_decode, "--model=" + self.tok, "--input_format=id"],
                             input=" ".join(map(str, ids)) + "\n", capture_output=True,
                             text=True, check=True)
        self.assertTrue(got.stdout.startswith(EXPECTED_TEXT), got.stdout)


# ----------------------------------------------------------------------------------------------
class VQTest(unittest.TestCase):
    def test_nearest_and_ties(self):
        cb = torch.tensor([[[1.0], [-1.0], [1.0], [3.0]]])  # G=1, K=4, duplicate codeword 0/2
        x = torch.tensor([[0.0], [1.0], [2.0], [2.9], [-5.0]])
        q, codes = ref.vq_quantize(x, cb)
        # 0.0: equidistant to 1 (k=0,2) and -1 (k=1) -> 0; 1.0 -> 0 (not 2); 2.0: 1 vs 3 -> 0
        self.assertEqual(codes[:, 0].tolist(), [0, 0, 0, 3, 1])
        np.testing.assert_array_equal(q[:, 0].numpy(), [1.0, 1.0, 1.0, 3.0, -1.0])

    def test_groups(self):
        rng = np.random.RandomState(0)
        G, K, dg, n = 3, 5, 4, 17
        cb = torch.from_numpy(rng.randn(G, K, dg).astype(np.float32))
        x = torch.from_numpy(rng.randn(n, G * dg).astype(np.float32))
        q, codes = ref.vq_quantize(x, cb)
        for i in range(n):
            for g in range(G):
                d = ((x[i, g * dg:(g + 1) * dg][None] - cb[g]) ** 2).sum(-1)
                k = int(np.argmin(d.numpy()))
                self.assertEqual(int(codes[i, g]), k)
                np.testing.assert_array_equal(q[i, g * dg:(g + 1) * dg].numpy(), cb[g, k].numpy())
        q2, codes2 = ref.vq_quantize(x, cb, chunk_rows=3)
        np.testing.assert_array_equal(q2.numpy(), q.numpy())
        np.testing.assert_array_equal(codes2.numpy(), codes.numpy())


# ----------------------------------------------------------------------------------------------
class RandomModelTest(TmpDirCase):
    def make(self, name, **kw):
        out = os.path.join(self.tmp, name)
        kw.setdefault("fit_seqs", 6)
        kw.setdefault("fit_len", 16)
        kw.setdefault("kmeans_iters", 4)
        mrm.make(out, **kw)
        return out, ref.load_model(out)

    def check_model(self, model, n=12, seed=0):
        r = model.r
        rng = np.random.RandomState(seed)
        toks = list(rng.randint(0, r["vocab"], size=n))
        logits = ref.forward(model, toks)
        self.assertEqual(logits.dtype, np.float32)
        self.assertEqual(logits.shape, (r["labels"] if r["classifier"] else r["vocab"],))
        self.assertTrue(np.isfinite(logits).all())
        self.assertGreater(float(logits.std()), 1e-3)
        cap = {}
        ref.run(model, toks, capture=cap)
        for s in r["vq"]:
            key = (int(s["layer"]), s["site"])
            codes = cap[("codes",) + key]
            self.assertEqual(tuple(codes.shape), (n, int(s["groups"])))
        # a different token changes the output (non-degenerate)
        toks2 = list(toks)
        toks2[0] = (toks2[0] + 1) % r["vocab"]
        toks2[-1] = (toks2[-1] + 1) % r["vocab"]
        self.assertFalse(np.array_equal(ref.forward(model, toks2), logits))
        return toks, logits

    def test_opt_lm_learned_vq(self):
        _, m = self.make("opt", family="opt", vq="0:attn_out:4:16,1:block_out:2:8", seed=3)
        self.assertNotIn("lm_head.weight", m.w)
        self.assertEqual(tuple(m.w["incnn.vq.0.attn_out.codebook"].shape), (4, 16, 16))
        self.assertEqual(tuple(m.w["model.decoder.embed_positions.weight"].shape), (66, 64))
        toks, _ = self.check_model(m)
        gen = ref.generate(m, toks, 3)
        self.assertEqual(len(gen), 3)

    def test_opt_dense_causal_prefix_property(self):
        _, m = self.make("optd", family="opt", act="gelu", layers=1, untied=True)
        self.assertIn("lm_head.weight", m.w)
        rng = np.random.RandomState(1)
        toks = list(rng.randint(0, 97, size=10))
        allv = ref.lm_logits_all(m, toks)
        for i in (1, 5, 10):
            np.testing.assert_allclose(ref.forward(m, toks[:i]), allv[i - 1], rtol=1e-5, atol=1e-5)

    def test_llama_classifier_gqa_vq(self):
        d, m = self.make("llc", family="llama", kv_heads=2, task="classifier", labels=3,
                         pool="mean", vq="0:block_out:4:8", seed=1)
        self.assertEqual(m.r["kv_heads"], 2)
        self.assertEqual(len(m.config["id2label"]), 3)
        self.check_model(m)
        out = subprocess.run([sys.executable, os.path.join(ROOT, "training", "incnn_ref.py"), d,
                              "--tokens", "1 2 3 4"], capture_output=True, text=True, check=True)
        js = json.loads(out.stdout)
        self.assertEqual(len(js["output"]), 3)
        np.testing.assert_array_equal(np.float32(js["output"]), ref.forward(m, [1, 2, 3, 4]))

    def test_bidirectional_and_none(self):
        _, m = self.make("bi", family="opt", position="none", attention="bidirectional",
                         task="classifier", pool="last", labels=2)
        self.assertNotIn("model.decoder.embed_positions.weight", m.w)
        self.check_model(m)
        _, m2 = self.make("nope", family="llama", position="none", layers=1)
        self.check_model(m2)
        _, m3 = self.make("optrope", family="opt", position="rope", layers=1)
        self.check_model(m3)

    def test_codebook_fit_is_meaningful(self):
        _, m = self.make("fit", family="llama", layers=1, vq="0:attn_out:16:16", fit_seqs=8,
                         fit_len=32)
        rng = np.random.RandomState(9)
        a_all, q_all = [], []
        for _ in range(4):  # fresh sequences, not the ones the codebook was fitted on
            cap = {}
            ref.run(m, rng.randint(0, 97, size=32), capture=cap)
            codes = cap[("codes", 0, "attn_out")]
            self.assertGreater(len(set(codes[:, 0].tolist())), 2)  # uses several codewords
            a = cap[(0, "attn_out")]
            a_all.append(a)
            q_all.append(ref.vq_quantize(a, m.w["incnn.vq.0.attn_out.codebook"])[0])
        a, q = torch.cat(a_all), torch.cat(q_all)
        rel = float(((a - q) ** 2).sum() / ((a - a.mean(0)) ** 2).sum())
        self.assertLess(rel, 0.7)  # the codebook explains a good part of the variance


# ----------------------------------------------------------------------------------------------
def hf_eager_logits(config, tensors, ids):
    """An independent port of HF's eager Bert/ModernBert{Sequence,Token}Classification forward
    (batch of one, full attention matrices, HF's additive finfo.min window mask, rotate_half,
    F.gelu), with incnn_vq applied; logits [labels] or [n, labels]."""
    import torch.nn.functional as F
    w = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
    c = config
    fam, arch = c["model_type"], c["architectures"][0]
    token = arch.endswith("TokenClassification")
    d, H = c["hidden_size"], c["num_attention_heads"]
    hd = d // H
    vq = {(s["layer"], s["site"]): w["incnn.vq.%d.%s.codebook" % (s["layer"], s["site"])]
          for s in c.get("incnn_vq", [])}

    def quant(key, x):  # x [1, n, d]
        if key not in vq:
            return x
        C = vq[key]
        G = C.shape[0]
        xg = x[0].reshape(x.shape[1], G, -1)
        idx = ((xg[:, :, None, :] - C[None]) ** 2).sum(-1).argmin(-1)  # [n, G]
        return torch.stack([C[g, idx[:, g]] for g in range(G)], 1).reshape(1, -1, d)

    def lin(name, x, bias=True):
        return F.linear(x, w[name + ".weight"], w[name + ".bias"] if bias else None)

    def act(name, x):
        return {"gelu": F.gelu, "relu": F.relu,
                "gelu_new": lambda t: F.gelu(t, approximate="tanh")}[name](x)

    def attend(q, k, v, mask):  # [1, H, n, hd]
        p = F.softmax(torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5 + mask, dim=-1,
                      dtype=torch.float32)
        return torch.matmul(p, v).transpose(1, 2).reshape(1, -1, d)

    x_ids = torch.tensor([ids])
    n = len(ids)
    zero = torch.zeros(1, 1, n, n)
    if fam == "bert":
        eps = c.get("layer_norm_eps", 1e-12)

        def ln(name, x):
            return F.layer_norm(x, (d,), w[name + ".weight"], w[name + ".bias"], eps)
        e = "bert.embeddings."
        h = w[e + "word_embeddings.weight"][x_ids] + w[e + "token_type_embeddings.weight"][
            torch.zeros_like(x_ids)]
        h = ln(e + "LayerNorm", h + w[e + "position_embeddings.weight"][torch.arange(n)[None]])
        for i in range(c["num_hidden_layers"]):
            p = "bert.encoder.layer.%d." % i
            q, k, v = (lin(p + "attention.self." + m, h).view(1, n, -1, hd).transpose(1, 2)
                       for m in ("query", "key", "value"))
            a = quant((i, "attn_out"), lin(p + "attention.output.dense", attend(q, k, v, zero)))
            a = ln(p + "attention.output.LayerNorm", a + h)
            m = act(c.get("hidden_act", "gelu"), lin(p + "intermediate.dense", a))
            h = quant((i, "block_out"), ln(p + "output.LayerNorm", lin(p + "output.dense", m) + a))
        if token:
            return lin("classifier", h)[0].numpy()
        return lin("classifier", torch.tanh(lin("bert.pooler.dense", h[:, 0])))[0].numpy()
    nb = c.get("norm_bias", False)
    ab, mb, cb = (c.get(k, False) for k in ("attention_bias", "mlp_bias", "classifier_bias"))

    def ln(name, x):
        return F.layer_norm(x, (d,), w[name + ".weight"], w[name + ".bias"] if nb else None,
                            c.get("norm_eps", 1e-5))

    def rope(theta):
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        freqs = (inv[None, :, None] @ torch.arange(n)[None, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]

    def rotate_half(t):
        return torch.cat((-t[..., hd // 2:], t[..., :hd // 2]), dim=-1)

    dist = (torch.arange(n)[None] - torch.arange(n)[:, None]).abs()
    window = zero.masked_fill(dist > c.get("local_attention", 128) // 2,
                              torch.finfo(torch.float32).min)
    every = c.get("global_attn_every_n_layers", 3)
    h = ln("model.embeddings.norm", w["model.embeddings.tok_embeddings.weight"][x_ids])
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        z = h if i == 0 else ln(p + "attn_norm", h)
        qkv = lin(p + "attn.Wqkv", z, ab).view(1, -1, 3, H, hd)
        q, k, v = qkv.transpose(3, 1).unbind(dim=2)
        glob = i % every == 0
        cos, sin = rope(c.get("global_rope_theta", 160000.0) if glob
                        else c.get("local_rope_theta", 10000.0))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        o = attend(q, k, v, zero if glob else window)
        a = quant((i, "attn_out"), lin(p + "attn.Wo", o, ab))
        h = h + a
        u, g = lin(p + "mlp.Wi", ln(p + "mlp_norm", h), mb).chunk(2, dim=-1)
        h = quant((i, "block_out"), h + lin(p + "mlp.Wo", act(c.get("hidden_activation", "gelu"),
                                                              u) * g, mb))
    h = ln("model.final_norm", h)
    if not token:
        mask = torch.ones(1, n, dtype=torch.bool)
        h = h[:, 0] if c.get("classifier_pooling", "cls") == "cls" else (
            (h * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True))
    head = ln("head.norm", act(c.get("classifier_activation", "gelu"), lin("head.dense", h, cb)))
    return lin("classifier", head)[0].numpy()


def rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


class EncoderTest(TmpDirCase):
    """bert / modernbert: make_random_model checkpoints against hf_eager_logits."""

    def make(self, name, **kw):
        kw.setdefault("fit_len", 24)
        out, model = RandomModelTest.make(self, name, **kw)
        config, tensors = ck.load_checkpoint(out)
        return out, model, config, tensors

    def check(self, m, config, tensors, lengths=(1, 7, 30)):
        rng = np.random.RandomState(len(tensors))
        for n in lengths:
            toks = [int(t) for t in rng.randint(0, m.r["vocab"], size=n)]
            got = ref.forward(m, toks)
            want = hf_eager_logits(config, tensors, toks)
            self.assertEqual(got.dtype, np.float32)
            self.assertEqual(got.shape, want.shape)
            self.assertEqual(got.shape, (n, m.r["labels"]) if m.r["token"] else (m.r["labels"],))
            self.assertLess(rel_err(got, want), 1e-5, (n, got, want))
            self.assertGreater(float(got.std()), 1e-2)
        return toks, got

    def test_bert_sequence(self):
        _, m, c, t = self.make("b", family="bert", seed=1)
        self.assertEqual(c["architectures"], ["BertForSequenceClassification"])
        self.assertIn("bert.pooler.dense.weight", t)
        self.assertEqual(t["bert.embeddings.position_embeddings.weight"].shape, (64, 32))
        toks, logits = self.check(m, c, t, (1, 7, 64))
        with self.assertRaises(ValueError):
            ref.forward(m, [1] * 65)  # learned positions: at most max_position_embeddings
        toks[5] = (toks[5] + 1) % 97
        self.assertFalse(np.array_equal(ref.forward(m, toks), logits))

    def test_bert_token_vq(self):
        d, m, c, t = self.make("bt", family="bert", task="token_classifier", act="gelu_new",
                               vq="0:attn_out:2:8,1:block_out:4:8", seed=2)
        self.assertEqual(c["architectures"], ["BertForTokenClassification"])
        self.assertFalse(any(k.startswith("bert.pooler") for k in t))
        self.check(m, c, t)
        cap = {}
        ref.run(m, list(range(20)), capture=cap)
        for key, G in (((0, "attn_out"), 2), ((1, "block_out"), 4)):
            self.assertEqual(tuple(cap[("codes",) + key].shape), (20, G))
            self.assertGreater(len(set(cap[("codes",) + key][:, 0].tolist())), 2)
        out = subprocess.run([sys.executable, os.path.join(ROOT, "training", "incnn_ref.py"), d,
                              "--tokens", "1 2 3 4"], capture_output=True, text=True, check=True)
        rows = json.loads(out.stdout)["output"]
        self.assertEqual(np.array(rows).shape, (4, 3))
        np.testing.assert_array_equal(np.float32(rows), ref.forward(m, [1, 2, 3, 4]))

    def test_modernbert_sequence_cls_and_mean(self):
        _, m, c, t = self.make("mc", family="modernbert", seed=3)
        self.assertEqual(c["classifier_pooling"], "cls")
        self.assertEqual(m.r["pool"], "cls")
        toks, cls = self.check(m, c, t)
        _, m2, c2, t2 = self.make("mm", family="modernbert", pool="mean", seed=3)
        self.assertEqual(m2.r["pool"], "mean")
        _, mean = self.check(m2, c2, t2)
        self.assertFalse(np.allclose(cls, mean))  # same weights, different pooling

    def test_modernbert_token_window_vq(self):
        _, m, c, t = self.make("mt", family="modernbert", task="token_classifier", layers=3,
                               window=8, global_every=3, vq="1:attn_out:2:8,2:block_out:4:8",
                               seed=4)
        self.assertEqual((c["local_attention"], c["global_attn_every_n_layers"]), (8, 3))
        self.assertEqual(m.r["half"], 4)
        self.assertNotIn("model.layers.0.attn_norm.weight", t)  # HF: nn.Identity
        self.assertIn("model.layers.1.attn_norm.weight", t)
        self.assertFalse(any(k.endswith(".bias") for k in t if k != "classifier.bias"))
        self.check(m, c, t, (1, 7, 23, 40))
        # a stray layer-0 attn_norm is ignored, as HF ignores it
        t2 = dict(t, **{"model.layers.0.attn_norm.weight": np.zeros(32, np.float32)})
        m2 = ref.model_of(c, t2)
        np.testing.assert_array_equal(ref.forward(m2, list(range(30))),
                                      ref.forward(m, list(range(30))))

    def test_modernbert_biases(self):
        _, m, c, t = self.make("mb", family="modernbert", task="token_classifier", bias=True,
                               act="relu", seed=5)
        for k in ("model.embeddings.norm.bias", "model.layers.1.attn_norm.bias",
                  "model.layers.0.attn.Wqkv.bias", "model.layers.0.attn.Wo.bias",
                  "model.layers.0.mlp.Wi.bias", "model.layers.0.mlp.Wo.bias",
                  "model.final_norm.bias", "head.dense.bias", "head.norm.bias"):
            self.assertIn(k, t)
        self.check(m, c, t)

    def test_local_layers_ignore_far_tokens(self):
        """Layer 0 (always global) made a no-op, layer 1 local with half-width 4: token-cls
        row i depends on tokens |i - j| <= 4 only; with layer 1 global it depends on all."""
        for every, local in ((3, True), (1, False)):
            _, m, _, _ = self.make("w%d" % every, family="modernbert", task="token_classifier",
                                   window=8, global_every=every, seed=6)
            m.w["model.layers.0.attn.Wo.weight"].zero_()
            toks = [int(x) for x in np.random.RandomState(0).randint(0, 97, size=30)]
            base = ref.forward(m, toks)
            j = 15
            toks[j] = (toks[j] + 1) % 97
            moved = np.abs(ref.forward(m, toks) - base).max(1) > 0
            near = np.abs(np.arange(30) - j) <= 4
            self.assertTrue(moved[near].all())
            self.assertEqual(bool(moved[~near].any()), not local)

    def test_encoder_attention_window(self):
        rng = np.random.RandomState(0)
        q, k, v = (torch.from_numpy(rng.randn(2, 11, 4).astype(np.float32)) for _ in range(3))
        full = ref.encoder_attention(q, k, v)
        np.testing.assert_allclose(ref.encoder_attention(q, k, v, 10).numpy(), full.numpy(),
                                   rtol=1e-6, atol=1e-6)
        s = (q @ k.transpose(1, 2)) * 0.5
        dist = (torch.arange(11)[:, None] - torch.arange(11)[None]).abs()
        want = torch.softmax(s.masked_fill(dist > 2, float("-inf")), -1) @ v
        np.testing.assert_allclose(ref.encoder_attention(q, k, v, 2).numpy(),
                                   want.transpose(0, 1).reshape(11, 8).numpy(), rtol=1e-6,
                                   atol=1e-6)

    def test_config_defaults_and_checks(self):
        r = ref.encoder_resolved({"model_type": "modernbert",
                                  "architectures": ["ModernBertForSequenceClassification"]})
        self.assertEqual((r["eps"], r["half"], r["global_every"], r["global_theta"],
                          r["local_theta"], r["pool"], r["act"], r["cls_act"], r["labels"]),
                         (1e-5, 64, 3, 160000.0, 10000.0, "cls", "gelu", "gelu", 2))
        self.assertFalse(r["norm_bias"] or r["attn_bias"] or r["mlp_bias"] or r["cls_bias"])
        r = ref.encoder_resolved({"model_type": "bert",
                                  "architectures": ["BertForTokenClassification"]})
        self.assertEqual((r["eps"], r["act"], r["max_pos"], r["token"]), (1e-12, "gelu", 512, True))
        base = {"model_type": "modernbert", "architectures": ["ModernBertForTokenClassification"],
                "num_hidden_layers": 4, "global_attn_every_n_layers": 2}
        r = ref.encoder_resolved(dict(base, rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 5e5},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e3}},
            layer_types=["full_attention", "sliding_attention"] * 2, local_rope_theta=None))
        self.assertEqual((r["global_theta"], r["local_theta"]), (5e5, 1e3))
        r = ref.encoder_resolved(dict(base, local_rope_theta=None))
        self.assertEqual(r["local_theta"], 160000.0)
        for bad in (dict(base, layer_types=["full_attention"] * 4),
                    dict(base, sliding_window=64),
                    dict(base, classifier_pooling="last"),
                    dict(base, hidden_activation="silu"),
                    dict(base, rope_parameters={"full_attention": {"rope_type": "linear"}}),
                    dict(base, architectures=["BertForTokenClassification"]),
                    dict(base, architectures=["ModernBertForMaskedLM"]),
                    {"model_type": "bert", "architectures": ["BertForSequenceClassification"],
                     "position_embedding_type": "relative_key"}):
            with self.assertRaises(ValueError, msg=str(bad)):
                ref.encoder_resolved(bad)
        with self.assertRaises(ValueError):
            mrm.make(os.path.join(self.tmp, "x"), family="opt", task="token_classifier")
        with self.assertRaises(ValueError):
            mrm.make(os.path.join(self.tmp, "y"), family="bert", window=8)

if __name__ == "__main__":
    unittest.main()

"""Tests of training/eval_incnn.py (with a stub incnn-run) and a tiny run of
training/train_stories_vq.py (needs ../shared/models/stories260K; skipped without it).

Run:  /usr/bin/python3 -m unittest discover -s test/python
"""

import gzip
import io
import json
import os
import stat
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))
STORIES = os.path.normpath(os.path.join(ROOT, "..", "shared", "models", "stories260K"))

import torch  # noqa: E402

import eval_incnn  # noqa: E402
import incnn_ref as ref  # noqa: E402
import textdata  # noqa: E402

torch.set_num_threads(1)

# A stub runtime: the "logits" favour the label whose name starts the file's text.
STUB = r'''#!/usr/bin/python3
import json, sys
text = open(sys.argv[sys.argv.index("--text") + 1], encoding="utf-8").read()
labels = %r
out = [1.0 if text.startswith(l) else 0.0 for l in labels]
print(json.dumps({"step": 0, "label": labels[out.index(max(out))], "output": out}))
print(json.dumps({"step": 1, "output": [0, 0, 9]}))
'''


class EvalIncnnTest(unittest.TestCase):
    def test_accuracy_and_confusion(self):
        L = textdata.PEP_LABELS
        rows = [("test", L[0], L[0] + " body"), ("test", L[1], L[1] + " x"),
                ("test", L[2], L[0] + " misfiled"), ("train", L[2], L[2]),
                ("test", L[0], L[0] + " ünïcode")]
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "peps"))
            with gzip.open(os.path.join(d, "peps", "corpus.jsonl.gz"), "wt",
                           encoding="utf-8") as f:
                for split, typ, body in rows:
                    f.write(json.dumps({"split": split, "type": typ, "body": body}) + "\n")
            stub = os.path.join(d, "incnn-run")
            with open(stub, "w") as f:
                f.write(STUB % (list(L),))
            os.chmod(stub, os.stat(stub).st_mode | stat.S_IXUSR)
            with redirect_stdout(io.StringIO()):
                acc, conf, preds = eval_incnn.main(["x.incnn", "--data", d, "--backend", "process",
                                                   "--incnn-run", stub])
        self.assertEqual(preds, [0, 1, 0, 0])
        self.assertAlmostEqual(acc, 0.75)
        self.assertEqual(conf.tolist(), [[2, 0, 0], [0, 1, 0], [1, 0, 0]])


@unittest.skipUnless(os.path.exists(os.path.join(STORIES, "stories260K.bin")),
                     "needs ../shared/models/stories260K")
class StoriesVQTest(unittest.TestCase):
    def test_tiny_run(self):
        import train_stories_vq as S
        args = ["--codes", "8", "--len", "24", "--eval-t08", "2", "--eval-greedy", "2",
                "--eval-t10", "2", "--train-seqs", "8", "--steps", "3", "--batch", "4",
                "--kmeans-rows", "300", "--kmeans-iters", "3", "--log-every", "3"]
        with tempfile.TemporaryDirectory() as d:
            with redirect_stdout(io.StringIO()):
                m1 = S.main(["--out", os.path.join(d, "a")] + args)
                m2 = S.main(["--out", os.path.join(d, "b")] + args)
            self.assertEqual(m1["dense"], m2["dense"])
            self.assertEqual(m1["g1k8"]["kmeans"], m2["g1k8"]["kmeans"])
            self.assertEqual(m1["g1k8"]["finetuned"], m2["g1k8"]["finetuned"])
            for f in ("config.json", "model.safetensors", "tokenizer.model"):
                with open(os.path.join(d, "a", "g1k8", f), "rb") as x, \
                        open(os.path.join(d, "b", "g1k8", f), "rb") as y:
                    self.assertEqual(x.read(), y.read(), f)
            m = ref.load_model(os.path.join(d, "a", "g1k8"))
            self.assertEqual([(s["layer"], s["site"], s["codes"]) for s in m.r["vq"]],
                             [(L, "attn_out", 8) for L in range(5)])
            # the model is more certain of its greedy continuations than of t=1 samples
            self.assertGreater(m1["dense"]["t1.0"], m1["dense"]["greedy"])
            # --data reuses the sequences; --layers / --distill: fewer sites, KL to the dense model
            with redirect_stdout(io.StringIO()):
                m3 = S.main(["--out", os.path.join(d, "c"), "--data",
                             os.path.join(d, "a", "data.json"), "--layers", "1,3",
                             "--distill", "0.5"] + args + ["--train-seqs", "12"])
            self.assertEqual(m3["dense"], m1["dense"])
            # with --data, --train-seqs beyond the reused set samples fresh sequences
            with open(os.path.join(d, "a", "data.json")) as x, \
                    open(os.path.join(d, "c", "data.json")) as y:
                da, dc = json.load(x), json.load(y)
            self.assertEqual(dc["eval_t08"], da["eval_t08"])
            self.assertEqual(dc["train_t10"][:8], da["train_t10"])
            self.assertEqual(len(dc["train_t10"]), 12)
            self.assertTrue(all(s[0] == S.BOS and len(s) == 24 for s in dc["train_t10"]))
            m = ref.load_model(os.path.join(d, "c", "g1k8-L13-kd0.5"))
            self.assertEqual([(s["layer"], s["site"], s["codes"]) for s in m.r["vq"]],
                             [(1, "attn_out", 8), (3, "attn_out", 8)])
            self.assertIn("finetuned", m3["g1k8-L13-kd0.5"])
            # per-layer group counts
            with redirect_stdout(io.StringIO()):
                m4 = S.main(["--out", os.path.join(d, "e"), "--data",
                             os.path.join(d, "a", "data.json"), "--layers", "0,2",
                             "--groups", "2,1"] + args)
            self.assertIn("g2-1k8-L02", m4)
            m = ref.load_model(os.path.join(d, "e", "g2-1k8-L02"))
            self.assertEqual([(s["layer"], s["groups"]) for s in m.r["vq"]], [(0, 2), (2, 1)])
            with self.assertRaises(SystemExit), redirect_stdout(io.StringIO()):
                S.main(["--out", os.path.join(d, "f"), "--data",
                        os.path.join(d, "a", "data.json"), "--layers", "0,2",
                        "--groups", "2,1,1"] + args)
            # code flips under edits of the generated sequences (BOS kept)
            import vq_flips
            with redirect_stdout(io.StringIO()):
                st = vq_flips.main([os.path.join(d, "a", "g1k8"), "--seqs",
                                    os.path.join(d, "a", "data.json") + ":eval_t08",
                                    "--docs", "2", "--edits", "2"])
            for kind in ("replace", "insert", "delete"):
                self.assertEqual(st[kind]["edits"], 4)
                for L in range(5):
                    c = st[kind]["sites"]["%d.attn_out" % L]
                    self.assertGreater(c["rows"], 0)
                    self.assertLessEqual(c["flipped"], c["changed_pre"])
                    self.assertLessEqual(c["changed_pre"], c["rows"])
            # a replaced token changes the layer-0 attention of every row at or after it
            c = st["replace"]["sites"]["0.attn_out"]
            self.assertEqual(c["changed_pre"], c["rows"])


if __name__ == "__main__":
    unittest.main()

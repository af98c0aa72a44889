#!/usr/bin/python3
"""Test accuracy of a compiled PEP classifier (``.incnn``) run by the C++ runtime.

    /usr/bin/python3 training/eval_incnn.py MODEL.incnn [--data ../shared/data]
        [--backend module|process] [--incnn-run build/bin/incnn-run] [--split test|train]
        [--json OUT.json]

Every held-out PEP ``body`` (the ``test`` split of ``DATA/peps/corpus.jsonl.gz``) is classified by
the runtime: with ``--backend module`` (the default) through the ``incnn`` Python module (a
``Document`` reset to each body, one loaded program and session for all; ``build/python`` is put on the path when
``incnn`` is not importable), with ``--backend process`` by writing each body to a temporary file
and spawning ``incnn-run MODEL.incnn --text FILE --json``. Both give the same outputs bit for bit;
the prediction is the argmax of the output (ties -> lowest index). The program's labels are in
the order of the checkpoint's ``id2label``, which for the PEP models of train_classifier.py is
textdata.PEP_LABELS (checked against the ``label`` field that incnn-run prints when present).
Like incnn_ref in train_classifier.py, the runtime sees the first ``max_position_embeddings``
tokens of each document. Prints the accuracy and the confusion matrix (rows = true label,
columns = predicted).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import textdata  # noqa: E402


def classify(incnn_run, program, text, tmpdir):
    path = os.path.join(tmpdir, "doc.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    p = subprocess.run([incnn_run, program, "--text", path, "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if p.returncode != 0:
        raise RuntimeError("incnn-run failed (%d): %s" % (p.returncode, p.stderr.strip()))
    first = next(line for line in p.stdout.splitlines() if line.strip())
    r = json.loads(first)
    out = np.asarray(r["output"], dtype=np.float64)
    return int(np.argmax(out)), r.get("label"), out


def module_classifier(program_path):
    """A classify(text) over one program loaded with the incnn module."""
    try:
        import incnn
    except ImportError:
        sys.path.insert(0, os.path.join(ROOT, "build", "python"))
        import incnn
    program = incnn.Program.load(program_path)
    doc = None

    def classify_text(text):
        nonlocal doc
        if doc is None:
            doc = incnn.Document(program, text)
        else:
            doc.reset(text)
        out = np.asarray(doc.output, dtype=np.float64)
        return int(np.argmax(out)), doc.prediction, out
    return classify_text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("program", help="compiled PEP classifier (.incnn)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--backend", choices=["module", "process"], default="module")
    ap.add_argument("--incnn-run", default=os.path.join(ROOT, "build", "bin", "incnn-run"),
                    help="with --backend process")
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--json", default=None, help="also write predictions/metrics here")
    a = ap.parse_args(argv)

    labels, train, test = textdata.load_task("pep", a.data)
    docs = test if a.split == "test" else train
    preds, margins = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eval_incnn") as tmp:
        if a.backend == "module":
            run = module_classifier(a.program)
        else:
            def run(text):
                return classify(a.incnn_run, a.program, text, tmp)
        for text, _ in docs:
            pred, name, out = run(text)
            if name is not None and name != labels[pred]:
                raise SystemExit("label order mismatch: argmax %d is %r in the program, %r here"
                                 % (pred, name, labels[pred]))
            preds.append(pred)
            s = np.sort(out)
            margins.append(float(s[-1] - s[-2]))
    y = np.array([l for _, l in docs])
    p = np.array(preds)
    k = len(labels)
    conf = np.bincount(y * k + p, minlength=k * k).reshape(k, k)
    acc = float((y == p).mean())
    seconds = time.perf_counter() - start
    print("%s: %s split, %d docs, accuracy %.4f (%d/%d); %s backend, %.2f s (%.1f ms/doc)"
          % (a.program, a.split, len(docs), acc, int((y == p).sum()), len(docs), a.backend,
             seconds, 1000 * seconds / max(1, len(docs))))
    print("confusion (rows = true %s, columns = predicted): %s" % (labels, conf.tolist()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"program": a.program, "split": a.split, "accuracy": acc,
                       "confusion": conf.tolist(), "labels": labels, "preds": preds,
                       "margins": margins}, f, indent=1)
            f.write("\n")
    return acc, conf, preds


if __name__ == "__main__":
    main()

"""Data sets and the sentencepiece tokenizer for the classifier tasks (training side only).

Data is read from ``../shared/data`` (relative to the repository root; ``--data`` overrides it)
and never copied into the repository.

Tasks:
  * ``pep``: ``../shared/data/peps/corpus.jsonl.gz``, text = ``body``, label = ``type``
    (Standards Track / Informational / Process), fixed ``split`` field (598 train / 138 test).
  * ``foods``: ``../shared/data/fine_foods/{train,test}.csv``, text = ``review``, label = ``score``
    (``great`` / ``other``).

Tokenizer: Debian's ``spm_train`` CLI (no Python sentencepiece module needed), BPE with byte
fallback (no unknown tokens), and a normalizer that is the identity except that TAB, LF and CR
map to a space; with sentencepiece's default ``remove_extra_whitespaces`` every run of
whitespace therefore becomes one space, leading/trailing whitespace is dropped, and a dummy
``▁`` prefix is added. So encoding a whole document with the tokenizer equals encoding
``" ".join(text.split(" \\t\\n\\r"))`` as one line, which is what :func:`encode` does through
``spm_encode``. No BOS/EOS is added: the model input is exactly the text's pieces.
"""

import csv
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))

PEP_LABELS = ["Standards Track", "Informational", "Process"]
FOODS_LABELS = ["great", "other"]

_WS = re.compile(r"[ \t\n\r]+")


def normalize_ws(text):
    """What the tokenizer's normalizer does to whitespace (see module doc)."""
    return _WS.sub(" ", text).strip(" ")


def load_task(task, data_dir=None):
    """Returns (labels, train [(text, label_id)], test [(text, label_id)])."""
    data_dir = data_dir or DEFAULT_DATA
    if task == "pep":
        path = os.path.join(data_dir, "peps", "corpus.jsonl.gz")
        train, test = [], []
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                item = (r["body"], PEP_LABELS.index(r["type"]))
                (train if r["split"] == "train" else test).append(item)
        return PEP_LABELS, train, test
    if task == "foods":
        out = []
        for split in ("train", "test"):
            rows = []
            with open(os.path.join(data_dir, "fine_foods", split + ".csv"), newline="",
                      encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    rows.append((r["review"], FOODS_LABELS.index(r["score"])))
            out.append(rows)
        return FOODS_LABELS, out[0], out[1]
    raise ValueError("unknown task %r" % task)


def train_tokenizer(texts, out_path, vocab_size=2048, model_type="bpe"):
    """Train a sentencepiece model with ``spm_train`` on ``texts`` (one sentence per line of
    each text) and write it to ``out_path``. Deterministic: single thread, no sampling, and run
    in a scratch directory with relative paths so the stored trainer spec is path-independent."""
    tmp = tempfile.mkdtemp(prefix="incnn_spm_")
    try:
        with open(os.path.join(tmp, "train.txt"), "w", encoding="utf-8") as f:
            for t in texts:
                for line in t.split("\n"):
                    line = normalize_ws(line)
                    if line:
                        f.write(line + "\n")
        with open(os.path.join(tmp, "norm.tsv"), "w") as f:
            f.write("9\t20\nA\t20\nD\t20\n")  # TAB, LF, CR -> SPACE; everything else identity
        cmd = ["spm_train", "--input=train.txt", "--model_prefix=tokenizer",
               "--vocab_size=%d" % vocab_size, "--model_type=%s" % model_type,
               "--byte_fallback=true", "--character_coverage=1.0",
               "--normalization_rule_tsv=norm.tsv", "--num_threads=1", "--pad_id=-1",
               "--max_sentence_length=100000", "--input_sentence_size=0"]
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.copyfile(os.path.join(tmp, "tokenizer.model"), out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode(model_path, texts):
    """Encode texts with ``spm_encode`` -> list of lists of int ids (no BOS/EOS)."""
    tmp = tempfile.mkdtemp(prefix="incnn_spm_")
    try:
        inp = os.path.join(tmp, "in.txt")
        with open(inp, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(normalize_ws(t) + "\n")
        res = subprocess.run(["spm_encode", "--model=%s" % model_path, "--output_format=id",
                              "--input=%s" % inp], check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        lines = res.stdout.decode("utf-8").split("\n")
        out = [[int(x) for x in ln.split()] for ln in lines[:len(texts)]]
        if len(out) != len(texts):
            raise RuntimeError("spm_encode returned %d lines for %d texts" % (len(out), len(texts)))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

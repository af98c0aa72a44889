"""Tests of the `incnn` Python module: compile round trips, outputs equal bit for bit to
incnn-run, random edit scripts equal to from-scratch runs, errors that leave sessions unchanged,
and sessions on threads with the GIL released.

    PYTHONPATH=build/python /usr/bin/python3 -m pytest python/tests
"""
import json
import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest

import incnn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("INCNN_BUILD", os.path.join(ROOT, "build"))
INCNN_RUN = os.path.join(BUILD, "bin", "incnn-run")
MAKE_MODEL = os.path.join(ROOT, "test", "tools", "Inputs", "make_test_model.py")
BUNDLED = os.path.join(ROOT, "models", "pep-vq")
SAMPLE = os.path.join(BUNDLED, "sample.txt")


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(bits(a), bits(b))


def make_model(path, *args):
    subprocess.run(["/usr/bin/python3", MAKE_MODEL, str(path), "--tiny-tokenizer", *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Random checkpoints of both families, with VQ, compiled through incnn.compile."""
    tmp = tmp_path_factory.mktemp("models")
    specs = {
        "opt": ["--family", "opt", "--position", "none", "--max-pos", "48", "--task",
                "classifier", "--labels", "3", "--vq", "0:attn_out:1:8,1:attn_out:1:8",
                "--seed", "4"],
        "llama": ["--family", "llama", "--position", "rope", "--max-pos", "48",
                  "--vq", "0:attn_out:1:8", "--seed", "5"],
    }
    out = {}
    for name, args in specs.items():
        ckpt = make_model(tmp / name, *args)
        # The checkpoints' own windows (a model without positions would
        # otherwise get 65,536 tokens).
        out[name] = incnn.compile(ckpt, str(tmp / (name + ".incnn")), max_positions=48)
    return out


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    return incnn.compile(BUNDLED, str(tmp_path_factory.mktemp("pep") / "pep.incnn"))


def sample_text():
    with open(SAMPLE, encoding="utf-8") as f:
        return f.read()


def test_compile_round_trip(models, tmp_path):
    p = models["opt"]
    assert p.task == "classifier" and len(p.labels) in (0, 3)
    assert p.output_size == 3 and p.max_positions == 48 and p.tokenizer is not None
    again = incnn.Program.load(p.path)
    assert again.labels == p.labels and again.vocab_size == p.vocab_size
    # In-memory compiles (no output path) work too and give the same outputs.
    mem = incnn.compile(os.path.dirname(p.path) + "/opt")
    assert mem.path == ""
    toks = [3, 4, 5, 6, 7]
    assert same_bits(incnn.Session(mem, toks).output, incnn.Session(again, toks).output)
    assert "<incnn.Program classifier" in repr(p)


def test_cache_plan_all_keeps_more(models, tmp_path):
    ckpt = os.path.dirname(models["opt"].path) + "/opt"
    minimal = incnn.compile(ckpt, str(tmp_path / "min.incnn"), cache_plan="minimal")
    full = incnn.compile(ckpt, str(tmp_path / "all.incnn"), cache_plan="all")
    toks = list(range(3, 30))
    a, b = incnn.Session(minimal, toks), incnn.Session(full, toks)
    assert same_bits(a.output, b.output)
    assert b.stats["cache_bytes"] > a.stats["cache_bytes"]
    with pytest.raises(ValueError, match="unknown cache plan"):
        incnn.compile(ckpt, str(tmp_path / "x.incnn"), cache_plan="some")


def test_output_equals_incnn_run(bundled, tmp_path):
    text = sample_text()
    doc = incnn.Document(bundled, text)
    path = tmp_path / "doc.txt"
    path.write_text(text, encoding="utf-8")
    run = subprocess.run([INCNN_RUN, bundled.path, "--text", str(path), "--json"],
                         check=True, stdout=subprocess.PIPE, universal_newlines=True)
    first = json.loads(run.stdout.splitlines()[0])
    assert same_bits(doc.output, np.array(first["output"], dtype=np.float32))
    assert doc.prediction == first["label"]
    # The stats carry incnn-run's keys, in its order (docs/json.md), and the
    # same counts.
    stats = doc.stats
    assert set(first["stats"]) <= set(stats)
    assert list(stats)[:10] == list(first["stats"])[:10]
    for key in ("macs", "macs_full", "tokens", "dirty_rows", "updated_rows",
                "code_flips", "certified_rows", "deferred_rows",
                "recomputed_rows", "state_bytes",
                "cache_bytes_per_token"):
        assert stats[key] == first["stats"][key], key


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_random_edit_scripts_equal_from_scratch(models, family):
    program = models[family]
    rng = random.Random(7)
    vocab, cap = program.vocab_size, program.max_positions
    tokens = [rng.randrange(vocab) for _ in range(20)]
    s = incnn.Session(program, tokens)
    for step in range(60):
        n = len(s.tokens)
        batch = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["replace", "insert", "delete"])
            m = len(tokens)
            if kind == "insert" and m < cap - 3:
                batch.append(("insert", rng.randint(0, m), [rng.randrange(vocab)]))
                tokens.insert(batch[-1][1], batch[-1][2][0])
            elif kind == "delete" and m > 2:
                batch.append(("delete", rng.randrange(m), 1))
                del tokens[batch[-1][1]]
            else:
                at = rng.randrange(m)
                batch.append({"op": "replace", "at": at, "tokens": [rng.randrange(vocab)]})
                tokens[at] = batch[-1]["tokens"][0]
        s.apply(batch)
        assert s.tokens == tokens, step
        scratch = incnn.Session(program, tokens)
        assert same_bits(s.output, scratch.output), step
        assert s.stats["macs"] <= s.stats["macs_full"] * 3
        del n
    assert s.verify()
    # The single-edit helpers.
    s.replace(0, [1])
    s.insert(1, [2, 3])
    s.delete(0, 2)
    assert s.verify()


def test_document_edits_with_character_offsets(bundled):
    text = "Caf\u00e9 na\u00efve r\u00e9sum\u00e9: " + sample_text()[:1500]
    doc = incnn.Document(bundled, text)
    rng = random.Random(3)
    pieces = [" the", "\u00fc", "\u20ac5", "", "  ", "\n", "PEP"]
    for step in range(40):
        n = len(doc.text)
        start = rng.randint(0, n)
        end = min(n, start + rng.randint(0, 4))
        new = rng.choice(pieces)
        expected = doc.text[:start] + new + doc.text[end:]
        doc.edit_chars(start, end, new)
        assert doc.text == expected, step
        assert doc.stats["tokenize_us"] >= 0
    assert doc.verify()
    assert doc.prediction in bundled.labels
    # Byte offsets: "é" is two bytes; an offset inside it is refused.
    before = (doc.text, doc.output)
    with pytest.raises(ValueError, match="splits a UTF-8 character"):
        doc.edit(4, 4, "x")
    assert doc.text == before[0] and same_bits(doc.output, before[1])


def test_rejected_edits_leave_the_session_unchanged(models):
    program = models["opt"]
    s = incnn.Session(program, [3, 4, 5, 6])
    tokens, output = s.tokens, s.output
    bad = [
        lambda: s.replace(4, [1]),
        lambda: s.insert(-1, [1]),
        lambda: s.insert(0, [program.vocab_size]),
        lambda: s.delete(0, 4),
        lambda: s.apply([("replace", 0, [1]), ("delete", 9, 1)]),
        lambda: s.apply([{"op": "frob", "at": 0}]),
        lambda: s.apply([{"op": "insert", "at": 0, "tokens": [1] * 1000}]),
        lambda: s.apply([("move", 0, 1)]),
        lambda: s.reset([]),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            call()
        assert s.tokens == tokens and same_bits(s.output, output)
    with pytest.raises(TypeError):
        s.insert(0, ["x"])
    s.replace(0, [9])
    assert s.verify()


def test_errors_are_python_exceptions(tmp_path):
    with pytest.raises(FileNotFoundError):
        incnn.Program.load(str(tmp_path / "missing.incnn"))
    garbage = tmp_path / "garbage.incnn"
    garbage.write_bytes(b"INCNNPRG" + b"\0" * 100)
    with pytest.raises(OSError, match="invalid program"):
        incnn.Program.load(str(garbage))
    with pytest.raises(OSError):
        incnn.compile(str(tmp_path / "no-such-model"))
    assert issubclass(incnn.OutOfContractError, ValueError)
    assert issubclass(incnn.OutOfRangeError, IndexError)
    assert issubclass(incnn.OutOfRangeError, ValueError)
    assert issubclass(incnn.ResourceExhaustedError, ValueError)


def test_exceptions_map_from_status_codes(models):
    program = models["opt"]
    s = incnn.Session(program, [3, 4, 5, 6])
    # OutOfRange: positions and lengths past a bound.
    for call in (lambda: s.replace(4, [1]), lambda: s.insert(5, [1]),
                 lambda: s.delete(2, 3),
                 lambda: s.apply([("replace", 0, [1]), ("delete", 9, 1)]),
                 lambda: s.insert(0, [1] * program.max_positions)):
        with pytest.raises(incnn.OutOfRangeError):
            call()
    # InvalidArgument: plain ValueError, not one of the subclasses.
    for call in (lambda: s.insert(0, [program.vocab_size]),
                 lambda: s.delete(0, 4), lambda: s.reset([])):
        with pytest.raises(ValueError) as info:
            call()
        assert type(info.value) is ValueError, info.value
    with pytest.raises(incnn.ResourceExhaustedError):
        s.apply([("delete", 0, 1)] * 4097)
    assert s.tokens == [3, 4, 5, 6] and s.verify()


def test_threads_run_in_parallel_with_the_gil_released(bundled):
    """While one thread is inside a long evaluation, another runs Python code.

    With a 1 s switch interval, a native call that kept the GIL would not let the main thread
    run at all before the call returned (it is shorter than the interval); a call that releases
    it lets the main thread count throughout."""
    text = sample_text()
    tokens = incnn.Document(bundled, text).tokens[: bundled.max_positions]
    started, done = threading.Event(), threading.Event()
    sessions = [incnn.Session(bundled, tokens, threads=1) for _ in range(2)]
    results = {}

    def work(i):
        if i == 0:
            started.set()
        for _ in range(5):
            sessions[i].reset(tokens)
        results[i] = sessions[i].output
        if i == 0:
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        threads[0].start()
        started.wait()
        count = 0
        while not done.is_set():
            count += 1
        threads[1].start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert count > 1000, count
    # Both threads computed the same, exact result.
    assert same_bits(results[0], results[1])
    assert same_bits(results[0], incnn.Session(bundled, tokens).output)


def test_docs_example_runs_as_written():
    """The example of docs/python.md, executed from the repository root."""
    with open(os.path.join(ROOT, "docs", "python.md"), encoding="utf-8") as f:
        page = f.read()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(code, "docs/python.md", "exec"), {})
    finally:
        os.chdir(cwd)


def expected_changed_rows(old_out, old_tokens, new_out, new_tokens, at, inserted, removed):
    """Rows of the new output that are new tokens or differ in any bit from their old row."""
    changed = []
    for i in range(len(new_tokens)):
        old = i if i < at else i - inserted + removed
        if at <= i < at + inserted:
            # A new token, unless a replacement kept it.
            if removed == 0 or new_tokens[i] != old_tokens[old]:
                changed.append(i)
                continue
        if not np.array_equal(bits(new_out[i]), bits(old_out[old])):
            changed.append(i)
    return changed


def test_token_classifier_outputs_rows_and_changed_rows(tmp_path):
    ckpt = make_model(tmp_path / "tagger", "--family", "modernbert", "--task",
                      "token_classifier", "--labels", "3", "--layers", "3", "--window", "6",
                      "--global-every", "3", "--vq", "0:attn_out:4:16,2:block_out:4:8",
                      "--max-pos", "64", "--seed", "9")
    program = incnn.compile(ckpt, str(tmp_path / "tagger.incnn"))
    assert program.task == "token_classifier" and program.output_size == 3
    rng = random.Random(11)
    tokens = [rng.randrange(program.vocab_size) for _ in range(30)]
    s = incnn.Session(program, tokens)
    assert s.output.shape == (30, 3)
    assert s.changed_rows == list(range(30))
    assert len(s.prediction) == 30 and set(s.prediction) <= set(program.labels)
    for step in range(40):
        old_out, old_tokens = s.output, list(s.tokens)
        m = len(old_tokens)
        kind = rng.choice(["replace", "insert", "delete"])
        at = rng.randrange(m)
        if kind == "insert" and m < 60:
            s.insert(at, [rng.randrange(program.vocab_size)])
            inserted, removed = 1, 0
        elif kind == "delete" and m > 4:
            s.delete(at, 1)
            inserted, removed = 0, 1
        else:
            s.replace(at, [rng.randrange(program.vocab_size)])
            inserted, removed = 1, 1
        assert s.output.shape == (len(s.tokens), 3), step
        assert s.changed_rows == expected_changed_rows(
            old_out, old_tokens, s.output, s.tokens, at, inserted, removed), step
        assert same_bits(s.output, incnn.Session(program, s.tokens).output), step
    # Documents: byte ranges of the tokens cover the text in order.
    text = "the quick brown fox jumps over"
    doc = incnn.Document(program, text)
    spans = doc.token_bytes
    assert len(spans) == len(doc.tokens) == doc.output.shape[0]
    assert spans[0][0] == 0 and spans[-1][1] == len(text.encode())
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert doc.changed_rows == list(range(len(spans)))
    doc.edit(4, 9, "quack")
    assert doc.verify() and doc.changed_rows
    assert all(0 <= r < len(doc.tokens) for r in doc.changed_rows)

"""Random calls on shared incnn objects from two threads.

Constructors with bad arguments, edits with random offsets, texts and token ids, batches,
resets, accessors and verify() run from two threads on one shared Session and one shared
Document (and on objects never initialized) for a bounded time. Every call must return or raise
a documented exception (ValueError, its subclasses OutOfContractError and UnicodeError, or
TypeError); verify() must be True whenever it runs, and after the threads stop.

    python3 stress_incnn.py PROGRAM.incnn [--seconds S] [--seed N]

Prints "stress: ok ..." and exits 0, or prints the failures and exits 1. Run by
test_stress.py and, against an AddressSanitizer build of the module, by scripts/sanitize.sh.
"""
import argparse
import os
import random
import sys
import threading
import time
import traceback

import numpy as np

import incnn

DOCUMENTED = (ValueError, TypeError)
WORDS = ["the", " ", "  ", "\n", "PEP", "caf\u00e9", "\u20ac5", "\u4e2d", "\U0001f600", "x.y",
         "(b)", "42", "Abstract", "process", "\t", ""]
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "models", "pep-vq", "sample.txt")


class Stress:
    def __init__(self, program, seed):
        self.p = program
        self.vocab = program.vocab_size
        self.cap = program.max_positions
        with open(SAMPLE, encoding="utf-8") as f:
            self.sample = f.read()
        self.s = incnn.Session(program, list(range(1, 40)))
        self.d = incnn.Document(program, self.sample[:4000])
        self.seed = seed
        self.calls = 0
        self.raised = 0
        self.failures = []
        self.lock = threading.Lock()

    # Random arguments ------------------------------------------------------------------------

    def text(self, r):
        k = r.random()
        if k < 0.05:
            return bytes(r.randrange(256) for _ in range(r.randint(1, 6)))  # mostly invalid
        if k < 0.08:
            return "bad \ud800 surrogate"
        if k < 0.11:
            return bytearray(b"x")
        if k < 0.13:
            return r.choice([None, 5, ["x"]])
        s = "".join(r.choice(WORDS) for _ in range(r.randint(0, 8)))
        return s.encode("utf-8") if r.random() < 0.2 else s

    def offset(self, r, n):
        k = r.random()
        if k < 0.04:
            return r.choice([2**70, -2**70, 2**63, -1, "1", 1.5, None])
        if k < 0.1:
            return np.int64(r.randint(0, max(n, 0)))
        return r.randint(-2, n + 2)

    def token(self, r):
        k = r.random()
        if k < 0.03:
            return r.choice([self.vocab, -1, 2**31, 2**70, 1.0, "3", None])
        return r.randrange(self.vocab)

    def tokens(self, r, n=None):
        n = r.randint(0, 6) if n is None else n
        k = r.random()
        if k < 0.04:
            return r.choice(["abc", b"abc", bytearray(b"ab"), 5, None])
        if k < 0.1:
            return np.array([r.randrange(self.vocab) for _ in range(n)],
                            dtype=r.choice([np.int64, np.int32, np.uint16, np.float32]))
        return [self.token(r) for _ in range(n)]

    def edit(self, r):
        n = self.cap
        op = r.choice(["replace", "insert", "delete", "frob", 7])
        k = r.random()
        if k < 0.3:
            d = {"op": op, "at": r.randint(-1, 60)}
            if op == "delete":
                d["count"] = r.randint(0, 3)
            else:
                d["tokens"] = [self.token(r) for _ in range(r.randint(0, 3))]
            return d
        if k < 0.35:
            return r.choice([("insert", 0), "x", None, ("delete", 0, 1, 2)])
        third = r.randint(0, 3) if op == "delete" else self.tokens(r)
        return (op, self.offset(r, min(n, 60)), third)

    # Operations ------------------------------------------------------------------------------

    def operations(self):
        s, d, p = self.s, self.d, self.p
        tok = p.tokenizer
        return [
            (3, lambda r: s.replace(self.offset(r, 50), self.tokens(r, r.randint(1, 3)))),
            (3, lambda r: s.insert(self.offset(r, 50), self.tokens(r, r.randint(1, 3)))),
            (3, lambda r: s.delete(self.offset(r, 50), r.choice([1, 1, 2, 0, -1, 2**70]))),
            (3, lambda r: s.apply([self.edit(r) for _ in range(r.randint(0, 4))])),
            (1, lambda r: s.apply([("delete", 0, 1)] * r.choice([4097, 5000]))),
            (1, lambda r: s.reset(self.tokens(r, r.randint(0, 80)))),
            (6, lambda r: d.edit(self.offset(r, 4100), self.offset(r, 4100), self.text(r))),
            (6, lambda r: d.edit_chars(self.offset(r, 4000), self.offset(r, 4000),
                                       self.text(r))),
            (1, lambda r: d.reset(self.sample[:r.randint(0, 6000)] if r.random() < 0.8
                                  else self.text(r))),
            (4, lambda r: (s.output, s.tokens, s.stats, s.prediction, s.program)),
            (4, lambda r: (d.text, d.tokens, d.output, d.prediction, d.stats, d.program)),
            (1, lambda r: self.check(s.verify(), "Session.verify")),
            (1, lambda r: self.check(d.verify(), "Document.verify")),
            (1, lambda r: incnn.Session(r.choice([p, p, None, "p", 5]),
                                        self.tokens(r, r.randint(0, 5)),
                                        threads=r.choice([1, 2, 0, -1, 1025, 2**70, "2"]))),
            (1, lambda r: incnn.Document(r.choice([p, p, None]), self.text(r),
                                         threads=r.choice([1, 2, -1, 1025]))),
            (1, lambda r: (tok.encode(self.text(r)), tok.decode(self.tokens(r)),
                           tok.piece(self.token(r)))),
            (1, lambda r: self.uninitialized(r)),
        ]

    def uninitialized(self, r):
        cls, name, args = r.choice([
            (incnn.Session, "output", None), (incnn.Session, "insert", (0, [1])),
            (incnn.Document, "text", None), (incnn.Document, "edit", (0, 0, "x")),
            (incnn.Program, "labels", None), (incnn.Tokenizer, "encode", ("x",))])
        value = getattr(cls.__new__(cls), name)
        if args is not None:
            value(*args)

    def check(self, ok, what):
        if not ok:
            raise AssertionError(what + " returned False")

    def worker(self, index, deadline):
        r = random.Random(self.seed * 1000 + index)
        ops = self.operations()
        weights = [w for w, _ in ops]
        calls = raised = 0
        while time.monotonic() < deadline and not self.failures:
            _, op = r.choices(ops, weights)[0]
            calls += 1
            try:
                op(r)
            except DOCUMENTED:
                raised += 1
            except Exception:  # anything else is a failure
                with self.lock:
                    self.failures.append(traceback.format_exc())
        with self.lock:
            self.calls += calls
            self.raised += raised

    def run(self, seconds):
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=self.worker, args=(i, deadline)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not self.failures:
            try:
                self.check(self.s.verify(), "Session.verify after the threads")
                self.check(self.d.verify(), "Document.verify after the threads")
            except Exception:
                self.failures.append(traceback.format_exc())
        return not self.failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("program")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    stress = Stress(incnn.Program.load(args.program), args.seed)
    ok = stress.run(args.seconds)
    for failure in stress.failures:
        print(failure, file=sys.stderr)
    print(f"stress: {'ok' if ok else 'FAILED'}: {stress.calls} calls, {stress.raised} raised "
          f"documented exceptions, {len(stress.d.text)} characters, {len(stress.s.tokens)} tokens")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

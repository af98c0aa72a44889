"""Checks incnn-run --json step lines against the documented schema.

    python check_json.py FILE --steps N --layers L --vq V --outputs O [--classifier]
"""

import argparse
import json
import re
import sys

NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


def fail(msg):
    print("check_json: " + msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--vq", type=int, required=True)
    ap.add_argument("--outputs", type=int, required=True)
    ap.add_argument("--classifier", action="store_true")
    a = ap.parse_args()
    lines = [x for x in open(a.file).read().splitlines() if x.strip()]
    if len(lines) != a.steps:
        fail("%d lines, want %d" % (len(lines), a.steps))
    keys = {"step", "tokens", "output", "stats"} | ({"label"} if a.classifier else set())
    # docs/json.md: the keys of every stats object, in this order.
    stat_keys = ["macs", "macs_full", "tokens", "dirty_rows", "updated_rows",
                 "code_flips", "certified_rows", "deferred_rows",
                 "recomputed_rows", "state_bytes", "us", "step_us",
                 "attention_us"]
    for k, line in enumerate(lines):
        j = json.loads(line)
        if set(j) != keys:
            fail("line %d: keys %s, want %s" % (k, sorted(j), sorted(keys)))
        if j["step"] != k:
            fail("line %d: step %r" % (k, j["step"]))
        if not isinstance(j["tokens"], int) or j["tokens"] < 1:
            fail("line %d: tokens %r" % (k, j["tokens"]))
        if a.classifier and not isinstance(j["label"], str):
            fail("line %d: label %r" % (k, j["label"]))
        out = j["output"]
        if len(out) != a.outputs or not all(isinstance(x, float) for x in out):
            fail("line %d: output is not %d floats" % (k, a.outputs))
        # Shortest round-trip float32 text: a plain JSON number of at most 9
        # significant digits.
        raw = line[line.index('"output":[') + 10:line.index("]")].split(",")
        for t in raw:
            digits = re.sub(r"[eE].*|[-.]", "", t).strip("0")
            if not NUMBER.match(t) or len(digits) > 9:
                fail("line %d: float %r not in shortest form" % (k, t))
        s = j["stats"]
        # Step 0 also reports the cache the session keeps per token.
        want = stat_keys + (["cache_bytes_per_token"] if k == 0 else [])
        if list(s) != want:
            fail("line %d: stats keys %s, want %s" % (k, list(s), want))
        if k == 0 and (not isinstance(s["cache_bytes_per_token"], int)
                       or s["cache_bytes_per_token"] <= 0):
            fail("line 0: cache_bytes_per_token %r" % s["cache_bytes_per_token"])
        if s["tokens"] != j["tokens"]:
            fail("line %d: stats tokens %r, line tokens %r" % (k, s["tokens"], j["tokens"]))
        for key in ("macs", "macs_full", "certified_rows", "recomputed_rows"):
            if not isinstance(s[key], int) or s[key] < 0:
                fail("line %d: %s %r" % (k, key, s[key]))
        if s["macs"] > s["macs_full"] and k:
            fail("line %d: more MACs than from scratch" % k)
        for key, n in (("dirty_rows", a.layers), ("updated_rows", a.layers),
                       ("code_flips", a.vq)):
            v = s[key]
            if len(v) != n or not all(isinstance(x, int) and 0 <= x <= j["tokens"] for x in v):
                fail("line %d: %s %r, want %d counts in [0, tokens]" % (k, key, v, n))
        if not isinstance(s["us"], (int, float)) or s["us"] < 0:
            fail("line %d: us %r" % (k, s["us"]))
    print("check_json: %d lines ok" % len(lines))


if __name__ == "__main__":
    main()

"""Compares incnn-embed-example output with incnn-run --json: the same number of steps, token
counts, MACs and bit-identical outputs (%.9g and shortest float text both round-trip float32).

    python compare_embed.py EMBED_OUTPUT RUN_JSONL
"""

import json
import re
import struct
import sys


def f32(x):
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def main():
    embed = open(sys.argv[1]).read().splitlines()
    runs = [json.loads(x) for x in open(sys.argv[2]) if x.strip()]
    steps = []
    for line in embed:
        m = re.match(r"step (\d+): (\d+) tokens, (\d+) MACs \(from scratch (\d+)\)", line)
        if m:
            steps.append({"step": int(m[1]), "tokens": int(m[2]), "macs": int(m[3]),
                          "macs_full": int(m[4])})
        elif line.startswith("output:"):
            steps[-1]["output"] = [f32(x) for x in line.split()[1:]]
    if len(steps) != len(runs):
        sys.exit("compare_embed: %d steps vs %d" % (len(steps), len(runs)))
    for e, r in zip(steps, runs):
        k = e["step"]
        if k != r["step"] or e["tokens"] != r["tokens"]:
            sys.exit("compare_embed: step %d: step/tokens differ" % k)
        for key in ("macs", "macs_full"):
            if e[key] != r["stats"][key]:
                sys.exit("compare_embed: step %d: %s %d vs %d" % (k, key, e[key],
                                                                 r["stats"][key]))
        want = [f32(x) for x in r["output"]]
        if e["output"] != want:
            sys.exit("compare_embed: step %d: outputs differ: %s vs %s" % (k, e["output"],
                                                                          want))
    print("compare_embed: %d steps identical" % len(steps))


if __name__ == "__main__":
    main()

"""Checks that incnn-run --json runs give the same output bits at every step.

    python same_outputs.py RUN.jsonl RUN.jsonl [...]
"""

import json
import struct
import sys


def steps(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def bits(output):
    return [struct.pack("<f", x) for x in output]


def main():
    runs = [steps(p) for p in sys.argv[1:]]
    if len({len(r) for r in runs}) != 1:
        sys.exit("same_outputs: the runs have different step counts: %s"
                 % [len(r) for r in runs])
    for i, first in enumerate(runs[0]):
        for path, run in zip(sys.argv[2:], runs[1:]):
            if bits(run[i]["output"]) != bits(first["output"]):
                sys.exit("same_outputs: step %d of %s differs from %s"
                         % (i, path, sys.argv[1]))
    deferred = [sum(s["stats"]["deferred_rows"] for s in r) for r in runs]
    print("%d steps, %d tokens at the start: the same output bits in all %d runs; "
          "rows deferred: %s" % (len(runs[0]), runs[0][0]["tokens"], len(runs),
                                 ", ".join(str(d) for d in deferred)))


if __name__ == "__main__":
    main()

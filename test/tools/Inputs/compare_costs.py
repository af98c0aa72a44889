#!/usr/bin/python3
"""Compares two `incnn-run --json` outputs of the same edits: every output must be equal bit for
bit (same floats), and the median per-edit MAC ratio B/A must be at least --min-ratio. Prints the
ratio and both programs' cache_bytes_per_token.

    compare_costs.py A.jsonl B.jsonl [--min-ratio R] [--more-cache]
"""
import argparse
import json
import statistics
import sys

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--min-ratio", type=float, default=None)
ap.add_argument("--more-cache", action="store_true", help="B must keep more bytes per token")
args = ap.parse_args()
a = [json.loads(l) for l in open(args.a) if l.strip()]
b = [json.loads(l) for l in open(args.b) if l.strip()]
if len(a) != len(b) or len(a) < 2:
    sys.exit("FAIL: %d vs %d steps" % (len(a), len(b)))
for x, y in zip(a, b):
    if x["output"] != y["output"]:
        sys.exit("FAIL: step %d outputs differ" % x["step"])
ratios = [y["stats"]["macs"] / max(1, x["stats"]["macs"]) for x, y in zip(a[1:], b[1:])]
ratio = statistics.median(ratios)
ca, cb = a[0]["stats"]["cache_bytes_per_token"], b[0]["stats"]["cache_bytes_per_token"]
print("same outputs; median MAC ratio %.2f; cache bytes per token %d vs %d" % (ratio, ca, cb))
if args.min_ratio is not None and ratio < args.min_ratio:
    sys.exit("FAIL: median MAC ratio %.2f < %.2f" % (ratio, args.min_ratio))
if args.more_cache and not cb > ca:
    sys.exit("FAIL: %d bytes per token is not more than %d" % (cb, ca))
print("ok")

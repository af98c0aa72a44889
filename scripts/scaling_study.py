#!/usr/bin/python3
"""Per-edit cost against document length: incnn-bench on documents of 1K to 64K tokens.

    /usr/bin/python3 scripts/scaling_study.py [--program build/pep-vq.incnn]
        [--lengths 1024,2048,...] [--threads 1] [--out docs/scaling]

For every length, a document of whole PEP bodies (``../shared/data/peps/corpus.jsonl.gz``; the
bundled ``models/pep-vq/sample.txt`` repeated when that is absent) gets synthetic edits of one
token and of PEP-hunk size (30 tokens): replace, insert and delete in turn at uniform positions.
Each run reports the median and p99 update time, our from-scratch time (every check also
compares the outputs bit for bit) and, up to --torch-max tokens, PyTorch's float forward of the
same weights (training/bench_torch_model.py). Writes OUT.json, OUT.md (a table) and OUT.svg (a
log-log plot) and prints the table.
"""

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus_text(nbytes):
    path = os.path.join(ROOT, "..", "shared", "data", "peps", "corpus.jsonl.gz")
    texts = []
    if os.path.exists(path):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts = [json.loads(line)["body"] for line in f]
    else:
        with open(os.path.join(ROOT, "models", "pep-vq", "sample.txt"), encoding="utf-8") as f:
            texts = [f.read()]
    out, i = [], 0
    while sum(len(t) for t in out) < nbytes:
        out.append(texts[i % len(texts)])
        i += 1
    return "\n\n".join(out)[:nbytes]


def run_bench(args, doc, span, torch):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [args.bench, args.program, "--synthetic", doc, "--new-tokens", "document",
           "--edits", str(args.edits), "--check-every", str(args.check_every),
           "--span", str(span), "--threads", str(args.threads), "--quiet", "--json", out]
    if torch:
        cmd += ["--torch", args.torch_model]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    with open(out) as f:
        s = json.load(f)["summary"]
    os.unlink(out)
    if not s["exact"]:
        sys.exit("mismatch at span %d on %s" % (span, doc))
    return s


def svg_plot(rows, path):
    """Log-log plot: time (ms) against tokens for each series."""
    series = [("from scratch (incnn)", "scratch_ms", "#444", ""),
              ("from scratch (PyTorch float)", "torch_ms", "#999", "6,4"),
              ("update, 30-token edit", "update30_ms", "#c0392b", ""),
              ("update, 1-token edit", "update1_ms", "#2471a3", "")]
    W, H, L, B, T, R = 640, 400, 70, 50, 20, 210
    xs = [r["tokens"] for r in rows]
    ys = [r[k] for r in rows for _, k, _, _ in series if r.get(k)]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    x1, y1 = max(x1, x0 + 0.1), max(y1, y0 + 1)

    def px(x):
        return L + (math.log10(x) - x0) / (x1 - x0) * (W - L - R)

    def py(y):
        return H - B - (math.log10(y) - y0) / (y1 - y0) * (H - B - T)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>']
    for e in range(y0, y1 + 1):
        y = py(10 ** e)
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' %
                   (L, y, W - R, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s ms</text>' %
                   (L - 6, y + 4, ("%g" % (10 ** e))))
    for x in xs:
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%dK</text>' %
                   (px(x), H - B + 18, round(x / 1024)))
    out.append('<text x="%d" y="%d" text-anchor="middle">document length (tokens)</text>' %
               ((L + W - R) // 2, H - 10))
    for i, (name, key, color, dash) in enumerate(series):
        pts = [(px(r["tokens"]), py(r[key])) for r in rows if r.get(key)]
        if not pts:
            continue
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" '
                   'stroke-dasharray="%s" points="%s"/>' %
                   (color, dash, " ".join("%.1f,%.1f" % p for p in pts)))
        for x, y in pts:
            out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (x, y, color))
        ly = T + 16 + i * 20
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" '
                   'stroke-dasharray="%s"/>' % (W - R + 12, ly, W - R + 36, ly, color, dash))
        out.append('<text x="%d" y="%d">%s</text>' % (W - R + 42, ly + 4, name))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--program", default=os.path.join(ROOT, "build", "pep-vq.incnn"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "bin", "incnn-bench"))
    ap.add_argument("--torch-model", default=os.path.join(ROOT, "models", "pep-vq"))
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768,65536")
    ap.add_argument("--edits", type=int, default=24)
    ap.add_argument("--check-every", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torch-max", type=int, default=32768,
                    help="longest length PyTorch is timed at")
    ap.add_argument("--bytes-per-token", type=float, default=3.4)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks", "scaling-whole"))
    a = ap.parse_args()
    a.bench, a.program = os.path.abspath(a.bench), os.path.abspath(a.program)
    rows = []
    tmp = tempfile.mkdtemp(prefix="incnn-scaling-")
    for n in [int(x) for x in a.lengths.split(",")]:
        doc = os.path.join(tmp, "doc-%d.txt" % n)
        with open(doc, "w", encoding="utf-8") as f:
            f.write(corpus_text(int(n * a.bytes_per_token)))
        one = run_bench(a, doc, 1, n <= a.torch_max)
        hunk = run_bench(a, doc, 30, False)
        row = {"tokens": int(one["median_tokens"]),
               "update1_ms": one["median_update_us"] / 1e3,
               "p99_update1_ms": one["p99_update_us"] / 1e3,
               "update30_ms": hunk["median_update_us"] / 1e3,
               "p99_update30_ms": hunk["p99_update_us"] / 1e3,
               "scratch_ms": one["median_from_scratch_us"] / 1e3,
               "mac_ratio1": one["median_mac_ratio"],
               "mac_ratio30": hunk["median_mac_ratio"]}
        if "torch_from_scratch_us" in one:
            row["torch_ms"] = one["torch_from_scratch_us"] / 1e3
        rows.append(row)
        print("%6d tokens: update %.2f / %.2f ms (1 / 30 tokens), from scratch %.0f ms%s" %
              (row["tokens"], row["update1_ms"], row["update30_ms"], row["scratch_ms"],
               ", PyTorch %.0f ms" % row["torch_ms"] if "torch_ms" in row else ""),
              flush=True)
    with open(a.out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| tokens | update, 1 token: median / p99 (ms) | update, 30 tokens: median / p99 (ms) "
             "| from scratch, incnn (ms) | from scratch, PyTorch (ms) | ratio, 1 token | "
             "ratio, 30 tokens | MAC ratio, 1 / 30 tokens |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        torch = "%.0f" % r["torch_ms"] if "torch_ms" in r else "—"
        lines.append("| %d | %.2f / %.1f | %.1f / %.1f | %.0f | %s | %.0fx | %.0fx | %.0fx / %.0fx |" %
                     (r["tokens"], r["update1_ms"], r["p99_update1_ms"], r["update30_ms"],
                      r["p99_update30_ms"], r["scratch_ms"], torch,
                      r["scratch_ms"] / r["update1_ms"], r["scratch_ms"] / r["update30_ms"],
                      r["mac_ratio1"], r["mac_ratio30"]))
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    svg_plot(rows, a.out + ".svg")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

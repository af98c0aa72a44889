#!/usr/bin/env python3
"""Plots docs/benchmarks/scaling.csv (written by scripts/scaling-study.sh)."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    path, out = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(path)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for position, style in (("none", "-"), ("learned", "--")):
        for edit, color in (("replace", "C0"), ("insert", "C1"), ("delete", "C2")):
            sel = [r for r in rows if r["position"] == position and r["edit"] == edit]
            if not sel:
                continue
            n = [int(r["tokens"]) for r in sel]
            label = f"{edit} ({'NoPE' if position == 'none' else 'learned pos.'})"
            axes[0].plot(n, [float(r["update_ms"]) for r in sel], style, color=color,
                         marker="o", label=label)
            axes[1].plot(n, [float(r["wall_ratio"]) for r in sel], style, color=color,
                         marker="o", label=label)
            axes[2].plot(n, [float(r["mac_ratio"]) for r in sel], style, color=color,
                         marker="o", label=label)
        sel = [r for r in rows if r["position"] == position and r["edit"] == "replace"]
        if sel:
            axes[0].plot([int(r["tokens"]) for r in sel],
                         [float(r["scratch_ms"]) for r in sel], style, color="k",
                         marker="x", label=f"from scratch ({position})")
    titles = ["median per-edit time (ms)", "wall-clock ratio (scratch / update)",
              "MAC ratio (scratch / update)"]
    for ax, title in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("OPT-125M geometry with VQ after attention: single-token edits")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()

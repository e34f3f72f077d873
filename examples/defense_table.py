#!/usr/bin/python3
"""defense_table.py - the defense table of examples/fmnist-defenses.sh from
pe-eval's NDJSON reports, and its plot (attack success against clean
accuracy, one point per method and row).

Usage: defense_table.py WORKDIR "METHODS" "SEEDS" "ROWS"
Reads WORKDIR/def-METHOD-ROW-sSEED.json (and def-METHOD-clean-sSEED.json),
prints Markdown (accuracy of the defended encoder on the test set without
the targets, its change from the clean encoder of the same method, attack
success over every (pair, seed) with a 95% Wilson interval), and writes
WORKDIR/defenses.svg. Rows with no report for some seed are left out.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_table import load, mean, wilson  # noqa: E402


def row_stats(work, method, row, seeds):
    acc, succ, n = [], 0, 0
    for s in seeds:
        p = os.path.join(work, "def-%s-%s-s%s.json" % (method, row, s))
        if not os.path.exists(p):
            return None
        task, targets = load(p)
        acc.append(task["clean_accuracy"])
        succ += sum(t["success"] for t in targets.values())
        n += len(targets)
    return mean(acc), succ, n


def main():
    work, methods, seeds, rows = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
    points = []
    print("| method | defense | accuracy (PA) | change from clean | attack success [95% CI] |")
    print("| --- | --- | --- | --- | --- |")
    for m in methods:
        clean = row_stats(work, m, "clean", seeds)
        if clean:
            lo, hi = wilson(clean[1], clean[2])
            print("| %s | clean encoder | %.2f%% | - | %.1f%% [%.1f, %.1f] |" % (
                m, 100 * clean[0], 100 * clean[1] / clean[2], 100 * lo, 100 * hi))
        for r in rows:
            st = row_stats(work, m, r, seeds)
            if not st:
                continue
            lo, hi = wilson(st[1], st[2])
            d = "%+.2f" % (100 * (st[0] - clean[0])) if clean else "-"
            print("| %s | %s | %.2f%% | %s | %.1f%% [%.1f, %.1f] |" % (
                m, r, 100 * st[0], d, 100 * st[1] / st[2], 100 * lo, 100 * hi))
            points.append((m, r, st[0], st[1] / st[2]))
    if not points:
        return
    # the plot: x accuracy, y attack success
    W, H, L, B = 560, 360, 60, 40
    xs = [p[2] for p in points]
    x0, x1 = min(xs) - 0.01, max(xs) + 0.01
    sx = lambda v: L + (v - x0) / (x1 - x0) * (W - L - 20)
    sy = lambda v: H - B - v * (H - B - 20)
    col = {"simclr": "#1f77b4", "moco": "#d62728"}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="10">' % (W, H),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, H - B, W - 20, H - B),
           '<line x1="%d" y1="20" x2="%d" y2="%d" stroke="black"/>' % (L, L, H - B),
           '<text x="%d" y="%d" text-anchor="middle">clean accuracy of the defended encoder</text>' % ((L + W) // 2, H - 8),
           '<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">attack success</text>' % (H // 2, H // 2)]
    for v in (0, 0.5, 1):
        out.append('<text x="%d" y="%d" text-anchor="end">%.0f%%</text>' % (L - 4, sy(v) + 3, 100 * v))
    for v in (x0, (x0 + x1) / 2, x1):
        out.append('<text x="%d" y="%d" text-anchor="middle">%.1f%%</text>' % (sx(v), H - B + 14, 100 * v))
    for m, r, a, s in points:
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(a), sy(s), col.get(m, "black")))
        out.append('<text x="%.1f" y="%.1f">%s %s</text>' % (sx(a) + 4, sy(s) - 4, m, r))
    out.append("</svg>")
    with open(os.path.join(work, "defenses.svg"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""defense_table.py - the defense table of examples/fmnist-defenses.sh from
pe-eval's NDJSON reports, and its plot (attack success against clean
accuracy, one point per method and row).

Usage: defense_table.py WORKDIR "METHODS" "SEEDS" "ROWS"
Reads WORKDIR/def-METHOD-ROW-sSEED.json (and def-METHOD-clean-sSEED.json),
prints Markdown (accuracy of the defended encoder on the test set without
the targets, its change from the clean encoder of the same method, attack
success over every (pair, seed) with a 95% Wilson interval, and the attack's
pull short of a flip: the mean rank of the target class in the probe's
scores and the mean change of the target's cosine to its target-class mean
from the row's clean twin, def-METHOD-twin-ROW-sSEED.json, the same
training without the poisons, or where there is none from the clean encoder
of the same method and seed, marked *), and writes
WORKDIR/defenses.svg (attack success against accuracy) and
WORKDIR/defenses-pull.svg (the pull against accuracy). Rows with no report
for some seed are left out.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_table import load, mean, wilson  # noqa: E402


def report(work, method, row, s):
    p = os.path.join(work, "def-%s-%s-s%s.json" % (method, row, s))
    return load(p) if os.path.exists(p) else None


def row_stats(work, method, row, seeds):
    """(accuracy, successes, outcomes, mean rank, mean pull, whether every
    seed's pull is against a twin) over the seeds; the pull is nan where a
    seed has no report to compare with."""
    acc, succ, n, ranks, pulls, twins, tranks = [], 0, 0, [], [], True, []
    for s in seeds:
        r = report(work, method, row, s)
        if r is None:
            return None
        task, targets = r
        acc.append(task["clean_accuracy"])
        succ += sum(t["success"] for t in targets.values())
        n += len(targets)
        ranks += [t["rank"] for t in targets.values()]
        c = report(work, method, "twin-" + row, s)
        if c is None:
            twins = False
            c = report(work, method, "clean", s)
        for k, t in targets.items():
            pulls.append(t["cos_target"] - c[1][k]["cos_target"] if c and k in c[1] else float("nan"))
            tranks.append(c[1][k]["rank"] if c and k in c[1] else float("nan"))
    return mean(acc), succ, n, mean(ranks), mean(pulls), twins, mean(tranks)


def main():
    work, methods, seeds, rows = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
    points = []
    print("| method | defense | accuracy (PA) | change from clean | attack success [95% CI] "
          "| mean rank of the target class | the same, clean twin "
          "| pull: cosine to the target-class mean, change from the clean twin |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in methods:
        clean = row_stats(work, m, "clean", seeds)
        if clean:
            lo, hi = wilson(clean[1], clean[2])
            print("| %s | clean encoder | %.2f%% | - | %.1f%% [%.1f, %.1f] | %.2f | - | - |" % (
                m, 100 * clean[0], 100 * clean[1] / clean[2], 100 * lo, 100 * hi, clean[3]))
        for r in rows:
            st = row_stats(work, m, r, seeds)
            if not st:
                continue
            lo, hi = wilson(st[1], st[2])
            d = "%+.2f" % (100 * (st[0] - clean[0])) if clean else "-"
            print("| %s | %s | %.2f%% | %s | %.1f%% [%.1f, %.1f] | %.2f | %.2f | %+.3f%s |" % (
                m, r, 100 * st[0], d, 100 * st[1] / st[2], 100 * lo, 100 * hi, st[3], st[6], st[4],
                "" if st[5] or r == "none" or r.startswith("filter-") else " *"))
            points.append((m, r, st[0], st[1] / st[2], st[4]))
    if not points:
        return
    plot(points, 3, (0, 1), "attack success", lambda v: "%.0f%%" % (100 * v),
         os.path.join(work, "defenses.svg"))
    pulls = [p[4] for p in points if p[4] == p[4]]
    if pulls:
        lo, hi = min(pulls + [0]), max(pulls + [0])
        pad = 0.1 * (hi - lo) or 0.01
        plot([p for p in points if p[4] == p[4]], 4, (lo - pad, hi + pad),
             "pull: cosine to the target-class mean, change from the clean twin",
             lambda v: "%+.3f" % v, os.path.join(work, "defenses-pull.svg"))


def plot(points, yi, yr, ylabel, yfmt, path):
    """an SVG scatter: x the defended encoder's accuracy, y points[i][yi]."""
    W, H, L, B, R = 640, 380, 60, 40, 110
    xs = [p[2] for p in points]
    x0, x1 = min(xs) - 0.01, max(xs) + 0.01
    y0, y1 = yr
    sx = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)
    sy = lambda v: H - B - (v - y0) / (y1 - y0) * (H - B - 20)
    col = {"simclr": "#1f77b4", "moco": "#d62728"}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="10">' % (W, H),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, H - B, W - R, H - B),
           '<line x1="%d" y1="20" x2="%d" y2="%d" stroke="black"/>' % (L, L, H - B),
           '<text x="%d" y="%d" text-anchor="middle">clean accuracy of the defended encoder</text>' % ((L + W) // 2, H - 8),
           '<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>' % (H // 2, H // 2, ylabel)]
    for v in (y0, (y0 + y1) / 2, y1):
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (L - 4, sy(v) + 3, yfmt(v)))
    if y0 < 0 < y1:
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#bbb" stroke-dasharray="3,3"/>' % (L, sy(0), W - R, sy(0)))
    for v in (x0, (x0 + x1) / 2, x1):
        out.append('<text x="%d" y="%d" text-anchor="middle">%.1f%%</text>' % (sx(v), H - B + 14, 100 * v))
    # labels top to bottom, each moved down below any label placed near it
    placed = []
    methods = len(set(p[0] for p in points))
    for p in sorted(points, key=lambda p: sy(p[yi])):
        m, r, a, y = p[0], p[1], p[2], p[yi]
        lx, ly = sx(a) + 5, sy(y) + 3
        while any(abs(ly - qy) < 11 and abs(lx - qx) < 110 for qx, qy in placed):
            ly += 11
        placed.append((lx, ly))
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(a), sy(y), col.get(m, "black")))
        if ly - sy(y) > 6:
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>' % (sx(a), sy(y), lx - 1, ly - 3))
        out.append('<text x="%.1f" y="%.1f">%s</text>' % (lx, ly, r if methods == 1 else m + " " + r))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")

if __name__ == "__main__":
    main()

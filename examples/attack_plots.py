#!/usr/bin/python3
"""attack_plots.py - SVG plots of the sweeps of examples/fmnist-attack-sweeps.sh
(no plotting library needed): for each swept factor, the attack success rate
and the mean cosine similarity of the targets to their target-class mean,
with the clean and the poisoned encoder, seed 1, same pairs throughout.

Usage: attack_plots.py WORKDIR OUTDIR
Writes OUTDIR/sweep-{poisons,epochs,crop,targets,model}.svg for the sweeps whose
reports exist, and prints a Markdown table of the points.
"""
import json
import os
import sys

SWEEPS = {
    "poisons": ("poisons per target", [(50, "default"), (150, "p150"), (500, "p500")]),
    "epochs": ("pre-training epochs", [(10, "e10"), (20, "default"), (40, "e40")]),
    "crop": ("crop scale minimum", [(0.08, "default"), (0.3, "c03")]),
    "targets": ("targets attacked at once", [(1, "t1"), (10, "default")]),
    "model": ("encoder", [("small", "default"), ("resnet18 x0.25", "r18w025")]),
}


def point(work, tag, kind, seed="1", only=None):
    p = os.path.join(work, "eval-%s-%s-s%s.json" % (kind, tag, seed))
    if not os.path.exists(p):
        return None
    recs = [json.loads(l) for l in open(p)]
    task = [r for r in recs if r["type"] == "task"][0]
    tg = [r for r in recs if r["type"] == "target"]
    if only is not None:
        tg = [r for r in tg if r["key"] in only]
    n = len(tg)
    return {"asr": sum(r["success"] for r in tg) / n,
            "cos_target": sum(r["cos_target"] for r in tg) / n,
            "cos_true": sum(r["cos_true"] for r in tg) / n,
            "rank": sum(r["rank"] for r in tg) / n,
            "acc": task["clean_accuracy"], "n": n}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def panel(x0, y0, w, h, xs, series, ylab, ylo, yhi, xlab):
    """series: list of (name, colour, [y or None])"""
    out = []
    n = len(xs)
    px = lambda i: x0 + 40 + (w - 60) * (i / (n - 1) if n > 1 else 0.5)
    py = lambda v: y0 + h - 30 - (h - 50) * (v - ylo) / (yhi - ylo)
    out.append('<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>' %
               (x0 + 40, y0 + 20, w - 60, h - 50))
    for k in range(5):
        v = ylo + (yhi - ylo) * k / 4
        out.append('<text x="%g" y="%g" font-size="10" text-anchor="end">%.2f</text>' %
                   (x0 + 36, py(v) + 3, v))
        out.append('<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#eee"/>' %
                   (x0 + 40, x0 + w - 20, py(v), py(v)))
    for i, x in enumerate(xs):
        out.append('<text x="%g" y="%g" font-size="10" text-anchor="middle">%s</text>' %
                   (px(i), y0 + h - 16, esc(x)))
    out.append('<text x="%g" y="%g" font-size="11" text-anchor="middle">%s</text>' %
               (x0 + w / 2 + 10, y0 + h - 2, esc(xlab)))
    out.append('<text x="%g" y="%g" font-size="11">%s</text>' % (x0 + 40, y0 + 14, esc(ylab)))
    for j, (name, col, ys) in enumerate(series):
        pts = [(px(i), py(v)) for i, v in enumerate(ys) if v is not None]
        if len(pts) > 1:
            out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' %
                       (col, " ".join("%g,%g" % p for p in pts)))
        for p in pts:
            out.append('<circle cx="%g" cy="%g" r="3" fill="%s"/>' % (p[0], p[1], col))
        out.append('<text x="%g" y="%g" font-size="10" fill="%s">%s</text>' %
                   (x0 + w - 130, y0 + 34 + 12 * j, col, esc(name)))
    return out


def main():
    work, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    print("| sweep | value | ASR clean | ASR poisoned | cos to target class, clean | "
          "poisoned | cos to own class, clean | poisoned | mean rank, clean | poisoned | "
          "CA | PA |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    # the targets sweep compares the first pair alone with the same pair
    # among ten, so it scores that pair only
    first = None
    pf = os.path.join(work, "pairs-default-t1.tsv")
    if os.path.exists(pf):
        first = {l.split("\t")[0] for l in open(pf)}
    for name, (xlab, pts) in SWEEPS.items():
        only = first if name == "targets" else None
        rows = []
        for x, tag in pts:
            c, p = point(work, tag, "clean", only=only), point(work, tag, "poisoned", only=only)
            rows.append((x, c, p))
            if c and p:
                print("| %s | %s | %.2f | %.2f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %.2f%% | "
                      "%.2f%% |" % (name, x, c["asr"], p["asr"], c["cos_target"], p["cos_target"],
                                    c["cos_true"], p["cos_true"], c["rank"], p["rank"],
                                    100 * c["acc"], 100 * p["acc"]))
        if sum(1 for _, c, p in rows if c and p) < 2:
            continue
        xs = [x for x, _, _ in rows]
        get = lambda k, which: [(r[which][k] if r[which] else None) for r in rows]
        svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="720" height="300" '
               'font-family="sans-serif">',
               '<rect width="720" height="300" fill="white"/>']
        svg += panel(0, 0, 360, 300, xs, [("clean encoder", "#1f77b4", get("asr", 1)),
                                          ("poisoned encoder", "#d62728", get("asr", 2))],
                     "attack success rate", 0.0, 1.0, xlab)
        vals = [v for v in get("cos_target", 1) + get("cos_target", 2) +
                get("cos_true", 1) + get("cos_true", 2) if v is not None]
        lo, hi = min(vals), max(vals)
        lo, hi = lo - 0.05 * (hi - lo + 1e-3), hi + 0.05 * (hi - lo + 1e-3)
        svg += panel(360, 0, 360, 300, xs,
                     [("to target class, clean", "#1f77b4", get("cos_target", 1)),
                      ("to target class, poisoned", "#d62728", get("cos_target", 2)),
                      ("to own class, clean", "#9ecae1", get("cos_true", 1)),
                      ("to own class, poisoned", "#fc9272", get("cos_true", 2))],
                     "mean cosine of the targets", lo, hi, xlab)
        svg.append("</svg>")
        with open(os.path.join(outdir, "sweep-%s.svg" % name), "w") as f:
            f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""audit_quality.py - the planted-defect set of bench/audit-quality.sh and its
scoring (docs/results.md, "Quality scans against cleanvision").

  audit_quality.py make OUT [--clean N] [--per M] [--seed S] [--fm DIR]
      Writes OUT/files/img-NNNNN.png and OUT/truth.tsv (file stem, type,
      original's stem for a near duplicate). A colour set made from
      Fashion-MNIST by tinting: each image's gray level v becomes
      v * (r, g, b) / 255 for a colour of random hue, saturation 0.3-0.7 and
      value 1 (so pe-audit's grayscale scan runs: the set is in colour).
      N clean images (default 5000), drawn at random from the 70,000, then M
      (default 100) of each defect, each from an image outside the clean
      ones unless said otherwise, all written by PIL:
        dark       tinted, then ImageEnhance.Brightness factor 0.05-0.2
        light      tinted, then blended towards white: 255 - (255 - p) * f,
                   f 0.05-0.2
        blurry     tinted, then ImageFilter.GaussianBlur radius 1.0-2.0
        grayscale  not tinted: half saved as 8-bit gray PNG (mode L), half
                   as RGB PNG with three equal channels
        neardup    a copy of one of the clean images: brightness x0.85-1.15,
                   and for half of them also 1 pixel cropped off one to four
                   sides and resized back to 28x28 (bilinear)
      File names are shuffled, so neither tool sees the type in a name.
  audit_quality.py score OUT --pe-lines LINES --pe-json AUDIT.jsonl
                   --cleanvision ISSUES.tsv [--truth-json T.json ...]
      Prints the Markdown table: per defect type, the recall of each tool's
      matching scan at its default threshold (a near duplicate counts as
      found when the copy and its original are in the same cluster, pe, or
      the same near-duplicate set, cleanvision), and per scan the clean
      images flagged per 10,000 (for near duplicates, flagged images other
      than the planted copies and their originals). --truth-json: summary
      objects of `pe-audit --truth TYPE.keys --json` (one file per type,
      named TYPE.json), whose precision, recall and AUC are listed too.
"""
import argparse
import colorsys
import gzip
import json
import os
import random
import sys

TYPES = ["dark", "light", "blurry", "grayscale", "neardup"]
PE_SCAN = {"dark": "dark", "light": "light", "blurry": "blurry", "grayscale": "grayscale",
           "neardup": "phash"}
CV_ISSUE = {"dark": "dark", "light": "light", "blurry": "blurry", "grayscale": "grayscale",
            "neardup": "near_duplicates"}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[4:8], "big")
    return [data[16 + i * 784:16 + (i + 1) * 784] for i in range(n)]


def cmd_make(a):
    from PIL import Image, ImageEnhance, ImageFilter
    rng = random.Random(a.seed)
    imgs = read_idx(os.path.join(a.fm, "train-images-idx3-ubyte.gz")) + \
        read_idx(os.path.join(a.fm, "t10k-images-idx3-ubyte.gz"))
    order = list(range(len(imgs)))
    rng.shuffle(order)
    clean_idx = order[:a.clean]
    spare = order[a.clean:]

    def tinted(i):
        g = Image.frombytes("L", (28, 28), imgs[i])
        h, s = rng.random(), rng.uniform(0.3, 0.7)
        r, gg, b = colorsys.hsv_to_rgb(h, s, 1.0)
        lut = [int(v * r + 0.5) for v in range(256)] + [int(v * gg + 0.5) for v in range(256)] + \
            [int(v * b + 0.5) for v in range(256)]
        return g.convert("RGB").point(lut)

    items = []  # (image, type, original index in items or None)
    for i in clean_idx:
        items.append((tinted(i), "clean", None))
    sp = iter(spare)
    for t in TYPES:
        for k in range(a.per):
            if t == "dark":
                im = ImageEnhance.Brightness(tinted(next(sp))).enhance(rng.uniform(0.05, 0.2))
            elif t == "light":
                f = rng.uniform(0.05, 0.2)
                im = tinted(next(sp)).point(lambda p, f=f: int(255 - (255 - p) * f + 0.5))
            elif t == "blurry":
                im = tinted(next(sp)).filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0)))
            elif t == "grayscale":
                im = Image.frombytes("L", (28, 28), imgs[next(sp)])
                if k % 2:
                    im = im.convert("RGB")
            else:  # neardup of clean image j
                j = rng.randrange(a.clean)
                while True:  # never the same pixels (that is an exact duplicate)
                    im = ImageEnhance.Brightness(items[j][0]).enhance(rng.uniform(0.85, 1.15))
                    if k % 2:
                        box = [0, 0, 28, 28]
                        sides = rng.sample(range(4), rng.randint(1, 4))
                        for sd in sides:
                            box[sd] += 1 if sd < 2 else -1
                        im = im.crop(tuple(box)).resize((28, 28), Image.BILINEAR)
                    if im.tobytes() != items[j][0].tobytes():
                        break
                items.append((im, t, j))
                continue
            items.append((im, t, None))
    names = ["img-%05d" % i for i in range(len(items))]
    rng.shuffle(names)
    os.makedirs(os.path.join(a.out, "files"), exist_ok=True)
    with open(os.path.join(a.out, "truth.tsv"), "w") as f:
        for (im, t, j), nm in zip(items, names):
            im.save(os.path.join(a.out, "files", nm + ".png"))
            f.write("%s\t%s\t%s\n" % (nm, t, names[j] if j is not None else "-"))
    print("made %d clean and %d x %d defective images in %s" % (
        a.clean, a.per, len(TYPES), os.path.join(a.out, "files")), file=sys.stderr)


def cmd_score(a):
    truth, orig = {}, {}
    for line in open(os.path.join(a.out, "truth.tsv")):
        nm, t, o = line.rstrip("\n").split("\t")
        truth[nm] = t
        if o != "-":
            orig[nm] = o
    key2nm = {}  # a key's files (more than one only for equal pixels)
    for line in open(a.pe_lines):
        f = line.rstrip("\n").split("\t")
        key2nm.setdefault(f[0], []).append(os.path.splitext(os.path.basename(f[-1]))[0])
    # pe: suspects per scan, phash cluster per image
    pe_flag = {s: set() for s in PE_SCAN.values()}
    pe_cluster = {}
    for line in open(a.pe_json):
        o = json.loads(line)
        if o.get("type") != "finding":
            continue
        for nm in key2nm[o["key"]]:
            if o["scan"] in pe_flag and o["suspect"]:
                pe_flag[o["scan"]].add(nm)
            if o["scan"] == "phash" and o.get("cluster_size", 0) > 1:
                pe_cluster[nm] = o["representative"]
    cv_flag = {s: set() for s in CV_ISSUE.values()}
    cv_set = {}
    for line in open(a.cleanvision):
        f = line.rstrip("\n").split("\t")
        nm, issues = f[0], f[1].split(",")
        for s in cv_flag:
            if s in issues:
                cv_flag[s].add(nm)
        if len(f) > 2 and f[2] != "-":
            cv_set[nm] = f[2]
    n_clean = sum(1 for t in truth.values() if t == "clean")
    pair_imgs = set(orig) | set(orig.values())
    tj = {}
    for p in a.truth_json or []:
        tj[os.path.splitext(os.path.basename(p))[0]] = json.load(open(p))

    def recall(t, flag, group):
        planted = [nm for nm, x in truth.items() if x == t]
        if t == "neardup":
            hit = sum(1 for nm in planted if nm in group and group.get(orig[nm]) == group[nm])
        else:
            hit = sum(1 for nm in planted if nm in flag)
        return hit, len(planted)

    def fp(t, flag):
        if t == "neardup":
            bad = [nm for nm in flag if nm not in pair_imgs]
        else:
            bad = [nm for nm in flag if truth[nm] == "clean"]
        return len(bad), 10000.0 * len(bad) / n_clean

    print("| defect (planted) | pe-audit scan | pe recall | pe false positives: count (per 10,000 clean) | pe --truth precision / recall / AUC | cleanvision issue | cleanvision recall | cleanvision false positives: count (per 10,000 clean) |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for t in TYPES:
        ps, cs = PE_SCAN[t], CV_ISSUE[t]
        ph, pn = recall(t, pe_flag[ps], pe_cluster)
        ch, cn = recall(t, cv_flag[cs], cv_set)
        pf, pf10 = fp(t, pe_flag[ps])
        cf, cf10 = fp(t, cv_flag[cs])
        tr = "-"
        if t in tj:
            sc = next(s for s in tj[t]["scans"] if s["scan"] == ps)
            fmt = lambda v: "-" if v is None else "%.3f" % v
            tr = "%s / %s / %s" % (fmt(sc["precision"]), fmt(sc["recall"]), fmt(sc["auc"]))
        print("| %s (%d) | %s | %d/%d = %.2f | %d (%.1f) | %s | %s | %d/%d = %.2f | %d (%.1f) |" % (
            t, pn, ps, ph, pn, ph / pn, pf, pf10, tr, cs, ch, cn, ch / cn, cf, cf10))
    print()
    print("Clean images: %d. Other flags on the clean images (count, per 10,000):" % n_clean)
    print()
    others_pe = sorted(set(json.loads(l)["scan"] for l in open(a.pe_json)
                           if '"finding"' in l) - set(PE_SCAN.values()))
    pe_other = {s: set() for s in others_pe}
    for line in open(a.pe_json):
        o = json.loads(line)
        if o.get("type") == "finding" and o["scan"] in pe_other and o["suspect"]:
            pe_other[o["scan"]].update(key2nm[o["key"]])
    cv_other = {}
    for line in open(a.cleanvision):
        f = line.rstrip("\n").split("\t")
        for s in f[1].split(","):
            if s != "-" and s not in CV_ISSUE.values():
                cv_other.setdefault(s, set()).add(f[0])
    for tool, d in (("pe-audit", pe_other), ("cleanvision", cv_other)):
        parts = []
        for s in sorted(d):
            c = sum(1 for nm in d[s] if truth[nm] == "clean")
            parts.append("%s %d (%.1f)" % (s, c, 10000.0 * c / n_clean))
        print("- %s: %s" % (tool, ", ".join(parts) if parts else "none"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("make")
    s.add_argument("out")
    s.add_argument("--clean", type=int, default=5000)
    s.add_argument("--per", type=int, default=100)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--fm", default="/usr/share/datasets/fashion-mnist")
    s.set_defaults(fn=cmd_make)
    s = sub.add_parser("score")
    s.add_argument("out")
    s.add_argument("--pe-lines", required=True)
    s.add_argument("--pe-json", required=True)
    s.add_argument("--cleanvision", required=True)
    s.add_argument("--truth-json", nargs="*")
    s.set_defaults(fn=cmd_score)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())

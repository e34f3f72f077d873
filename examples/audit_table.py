"""The poison scans' table for docs/results.md from pe-audit --truth --json
--all outputs (examples/audit-poisons.sh writes them).

    /usr/bin/python3 examples/audit_table.py audit-plain.json audit-blind.json

Per setting and scan: suspects, precision, recall and false positives per
10,000 clean images at the scan's default threshold, the ROC AUC, and the
best recall any threshold reaches at a precision of at least 0.9 (from
every image's score: --all prints them). The row "any poison scan" is the
union of composite, recurring, seam and against, as pe-audit's summary
counts it.
"""
import json
import sys

PROPER = ("composite", "recurring", "seam", "against")


def best_recall(pairs, npos, min_precision=0.9):
    """Highest recall over thresholds with precision >= min_precision."""
    pairs = sorted(pairs, key=lambda x: -x[0])
    best, tp, n, i = 0.0, 0, 0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            tp += pairs[j][1]
            n += 1
            j += 1
        if n and tp / n >= min_precision:
            best = max(best, tp / npos)
        i = j
    return best


def setting(path):
    rows = [json.loads(l) for l in open(path)]
    summ = rows[-1]
    assert summ["type"] == "summary", path
    by_scan = {}
    poison = {}
    union = {}
    for r in rows[:-1]:
        by_scan.setdefault(r["scan"], []).append((r["score"], int(r["poison"])))
        poison[r["key"]] = r["poison"]
        if r["scan"] in PROPER:
            union[r["key"]] = union.get(r["key"], False) or r["suspect"]
    npos = sum(poison.values())
    nclean = len(poison) - npos
    out = []
    for s in summ["scans"]:
        name = s["scan"]
        if name == "poison":
            fp = sum(1 for k, v in union.items() if v and not poison[k])
            out.append(("any poison scan", s["suspects"], s.get("precision"), s.get("recall"),
                        fp * 1e4 / nclean, None, None))
            continue
        if name not in PROPER + ("size",):
            continue
        out.append((name, s["suspects"], s.get("precision"), s.get("recall"),
                    s["fp"] * 1e4 / nclean, s.get("auc"), best_recall(by_scan[name], npos)))
    return summ, npos, nclean, out


def fmt(v, d=3):
    return "-" if v is None else ("%.*f" % (d, v))


for path in sys.argv[1:]:
    summ, npos, nclean, out = setting(path)
    print("%s: %d images, %d poisons, %d clean" % (path.rsplit("/", 1)[-1], summ["images"], npos, nclean))
    print()
    print("| scan | suspects | precision | recall | FP per 10,000 clean | ROC AUC | recall at precision >= 0.9 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, n, p, r, fp, auc, br in out:
        print("| %s | %d | %s | %s | %.1f | %s | %s |" % (name, n, fmt(p), fmt(r), fp, fmt(auc), fmt(br)))
    print()

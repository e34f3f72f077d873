#!/usr/bin/python3
"""attack_table.py - the table of examples/fmnist-attack.sh from pe-eval's
NDJSON reports: CA, PA, attack success with the clean and the poisoned
encoder (95% Wilson intervals over every (pair, seed) outcome), and per pair
the predictions, the rank of the target class and the cosine pulls.

Usage: attack_table.py WORKDIR TAG SEED...
Reads WORKDIR/eval-{clean,poisoned}-TAG-sSEED.json, prints Markdown, and
writes WORKDIR/summary-TAG.json (one object) for the sweep plots.
"""
import json
import math
import os
import sys


def wilson(k, n, z=1.959963984540054):
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def load(path):
    task, targets = None, {}
    for line in open(path):
        r = json.loads(line)
        if r["type"] == "task":
            task = r
        elif r["type"] == "target":
            targets[r["key"]] = r
    return task, targets


def mean(v):
    return sum(v) / len(v) if v else float("nan")


def main():
    work, tag, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs = {}
    for kind in ("clean", "poisoned"):
        for s in seeds:
            p = os.path.join(work, "eval-%s-%s-s%s.json" % (kind, tag, s))
            if os.path.exists(p):
                runs[(kind, s)] = load(p)
    seeds = [s for s in seeds if ("clean", s) in runs and ("poisoned", s) in runs]
    if not seeds:
        sys.exit("attack_table.py: no seed has both reports in %s" % work)
    keys = list(runs[("clean", seeds[0])][1].keys())
    summary = {"tag": tag, "seeds": seeds, "pairs": len(keys)}
    print("### Configuration `%s`: %d pairs x %d seeds (%s)\n" % (tag, len(keys), len(seeds),
                                                                 ", ".join(seeds)))
    print("| | clean encoder | poisoned encoder |")
    print("| --- | --- | --- |")
    acc = {k: [runs[(k, s)][0]["clean_accuracy"] for s in seeds] for k in ("clean", "poisoned")}
    row = "| accuracy on the test set without the targets (CA, PA), per seed |"
    for k in ("clean", "poisoned"):
        row += " %s (mean %.2f%%) |" % (", ".join("%.2f%%" % (100 * a) for a in acc[k]),
                                        100 * mean(acc[k]))
    print(row)
    for k in ("clean", "poisoned"):
        succ = sum(runs[(k, s)][1][t]["success"] for s in seeds for t in keys)
        n = len(seeds) * len(keys)
        lo, hi = wilson(succ, n)
        summary["asr_" + k] = succ / n
        summary["asr_%s_ci" % k] = [lo, hi]
        summary["acc_" + k] = mean(acc[k])
    row = "| attack success rate (95% Wilson interval) |"
    for k in ("clean", "poisoned"):
        lo, hi = summary["asr_%s_ci" % k]
        row += " %.1f%% [%.1f, %.1f] |" % (100 * summary["asr_" + k], 100 * lo, 100 * hi)
    print(row)
    for field, label in (("rank", "mean rank of the target class (1 = top)"),
                         ("cos_target", "mean cosine to the target-class mean"),
                         ("cos_true", "mean cosine to the own-class mean")):
        row = "| %s |" % label
        for k in ("clean", "poisoned"):
            v = mean([runs[(k, s)][1][t][field] for s in seeds for t in keys])
            summary["%s_%s" % (field, k)] = v
            row += " %.3f |" % v
        print(row)
    print()
    print("Per pair (each cell: the seeds' predictions; mean rank; mean cosine to the "
          "target-class mean, to the own-class mean):\n")
    print("| target | true -> target | clean encoder | poisoned encoder |")
    print("| --- | --- | --- | --- |")
    pairs = []
    for t in keys:
        c0 = runs[("clean", seeds[0])][1][t]
        cells = []
        for k in ("clean", "poisoned"):
            rs = [runs[(k, s)][1][t] for s in seeds]
            cells.append("%s; %.1f; %.3f, %.3f" % (
                " ".join(r["predicted_class"] for r in rs), mean([r["rank"] for r in rs]),
                mean([r["cos_target"] for r in rs]), mean([r["cos_true"] for r in rs])))
            pairs.append({"key": t, "kind": k, "success": sum(r["success"] for r in rs),
                          "rank": mean([r["rank"] for r in rs]),
                          "cos_target": mean([r["cos_target"] for r in rs]),
                          "cos_true": mean([r["cos_true"] for r in rs])})
        print("| `%s` | %s -> %s | %s | %s |" % (t[:8], c0["true_class"], c0["target_class"],
                                                 cells[0], cells[1]))
    summary["per_pair"] = pairs
    with open(os.path.join(work, "summary-%s.json" % tag), "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    main()

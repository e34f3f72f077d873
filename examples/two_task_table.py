#!/usr/bin/python3
"""two_task_table.py - the table of examples/fmnist-two-tasks.sh: for each
encoder, its fine-task report (WORKDIR/NAME.json) and its coarse-task report
(WORKDIR/NAME-coarse.json) side by side.

Usage: two_task_table.py WORKDIR NAME...
Each task: accuracy on the test set without that task's targets, attack
success (successes / targets, 95% Wilson interval), the mean rank of the
target class and the mean cosine of a target's feature to its target-class
mean.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_table import load, mean, wilson  # noqa: E402


def cells(path):
    task, targets = load(path)
    k, n = sum(t["success"] for t in targets.values()), len(targets)
    lo, hi = wilson(k, n)
    return ["%.2f%%" % (100 * task["clean_accuracy"]),
            "%d/%d [%.1f, %.1f]" % (k, n, 100 * lo, 100 * hi),
            "%.2f" % mean([t["rank"] for t in targets.values()]),
            "%.3f" % mean([t["cos_target"] for t in targets.values()])]


def main():
    work, names = sys.argv[1], sys.argv[2:]
    print("| encoder | fine: accuracy | fine: attack success [95% CI] | fine: mean rank | fine: cos to target class "
          "| coarse: accuracy | coarse: attack success [95% CI] | coarse: mean rank | coarse: cos to target class |")
    print("| --- " * 9 + "|")
    for n in names:
        row = [n]
        for suffix in ("", "-coarse"):
            p = os.path.join(work, n + suffix + ".json")
            row += cells(p) if os.path.exists(p) else ["-"] * 4
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""crop_geometry.py - how often SimCLR's two RandomResizedCrop views of a
PoisonedEncoder composite fall one on each part (one view wholly inside the
target, the other wholly inside the reference), by Monte Carlo with
torchvision's crop-parameter algorithm (10 tries, then the centre crop).

Usage: crop_geometry.py [TRIALS]   (default 200000; seeded, reproducible)
Prints a Markdown table for a 28x28 target and reference: side by side at
2:1 (56x28), and the same composite squashed to 28x28, at crop scales
(0.08, 1), (0.2, 1), (0.3, 1), (0.5, 1).
"""
import math
import random
import sys


def rrc(rng, W, H, scale, ratio=(3 / 4, 4 / 3)):
    area = W * H
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        ta = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*lr))
        w = int(round(math.sqrt(ta * ar)))
        h = int(round(math.sqrt(ta / ar)))
        if 0 < w <= W and 0 < h <= H:
            return rng.randint(0, W - w), rng.randint(0, H - h), w, h
    r = W / H
    if r < ratio[0]:
        w, h = W, int(round(W / ratio[0]))
    elif r > ratio[1]:
        h, w = H, int(round(H * ratio[1]))
    else:
        w, h = W, H
    return (W - w) // 2, (H - h) // 2, w, h


def part(box, split):  # which half a box lies in wholly: 0 left, 1 right, None both
    x, _, w, _ = box
    if x + w <= split:
        return 0
    if x >= split:
        return 1
    return None


def prob(rng, W, H, split, scale, n):
    hit = 0
    for _ in range(n):
        a, b = part(rrc(rng, W, H, scale), split), part(rrc(rng, W, H, scale), split)
        hit += a is not None and b is not None and a != b
    return hit / n


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    rng = random.Random(2026)
    print("| crop scale | 56x28 composite (2:1) | squashed to 28x28 |")
    print("| --- | --- | --- |")
    for s in [(0.08, 1), (0.2, 1), (0.3, 1), (0.5, 1)]:
        p2 = prob(rng, 56, 28, 28, s, n)
        p1 = prob(rng, 28, 28, 14, s, n)
        print("| %g-%g | %.2f%% | %.2f%% |" % (s[0], s[1], 100 * p2, 100 * p1))


if __name__ == "__main__":
    main()

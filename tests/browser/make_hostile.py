"""Writes the image folders of the report tests (tests/cli/report.sh).

    make_hostile.py ROOT hostile|benign

ROOT/train and ROOT/eval, each with class folders of synthetic images
(PNG, written by Pillow). With "hostile" the class folders, subfolders and
file names hold HTML and script syntax, quotes, '&', "</script>", "<!--",
a tab and bytes that are not UTF-8; with "benign" the same images under
plain names, so the two reports must have the same structure.

The images: 32x32 RGB pictures of random rectangles (distinct per seed);
in the first class one picture under three names (an exact duplicate) and
a dark one, in the third a slightly changed copy of a picture (a near
duplicate) and a flat one, so that every class has images in the report.
"""
import os
import random
import sys

from PIL import Image, ImageDraw

root, kind = sys.argv[1], sys.argv[2]
hostile = kind == "hostile"


def picture(seed, dark=False):
    rng = random.Random(seed)
    im = Image.new("RGB", (32, 32), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(7):
        x0, y0 = rng.randrange(28), rng.randrange(28)
        x1, y1 = x0 + 3 + rng.randrange(16), y0 + 3 + rng.randrange(16)
        d.rectangle([x0, y0, x1, y1], fill=tuple(rng.randrange(256) for _ in range(3)))
    if dark:
        im = im.point(lambda v: v // 12)
    return im


def name(h, b):
    """A path component: hostile bytes h or benign text b."""
    return os.fsdecode(h) if hostile else b


# class folders (bytes, so that invalid UTF-8 reaches the file system)
classes = [
    (b"<script>alert(1)<", b"script>", "c0", "s"),   # with the subfolder: <script>alert(1)</script>
    (b"\"cls\" & 'x' <i class=pwn>", None, "c1", None),
    (b"\xff\xfe<u class=pwn>", None, "c2", None),
]
files = [
    b"<img src=x onerror=alert(2)>",
    b"\"q'&amp;<b class=pwn>b",
    b"tab\there <!-- c -->",
    b"\xc0\xaf<s>",
]

for split, base in (("train", 100), ("eval", 900)):
    for ci, (hc, hsub, bc, bsub) in enumerate(classes):
        folder = os.path.join(root, split, name(hc, bc))
        if hsub:
            folder = os.path.join(folder, name(hsub, bsub))
        os.makedirs(folder, exist_ok=True)
        n = 10 if split == "train" else 2
        for i in range(n):
            seed = base + 20 * ci + i
            fn = name(files[i % len(files)], "f") + "%d.png" % i
            picture(seed).save(os.path.join(folder, fn))
        if split == "train" and ci == 0:
            # an exact duplicate under two more names, and a dark picture
            picture(base).save(os.path.join(folder, name(b"dup <a href=x>", "dup") + "1.png"))
            picture(base).save(os.path.join(folder, name(b"dup2 \xe9&lt;", "dup") + "2.png"))
            picture(base + 2, dark=True).save(os.path.join(folder, name(b"dark \xc0\xaf<h1>", "dark") + ".png"))
        if split == "train" and ci == 2:
            # a near duplicate and a flat picture
            near = picture(base + 40 + 1)
            near.putpixel((3, 3), (255, 255, 255))
            near.save(os.path.join(folder, name(b"near <p>", "near") + ".png"))
            Image.new("RGB", (32, 32), (128, 128, 128)).save(
                os.path.join(folder, name(b"flat <table>", "flat") + ".png"))

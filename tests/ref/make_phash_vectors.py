#!/usr/bin/python3
"""Writes tests/ref/phash_vectors.tsv: test vectors of the perceptual hash
(docs/phash.md) in both modes, for tests/unit/test_audit.c.

Run once by hand with Debian's Pillow 9.4 (python3-pil), and imagehash and
scipy from PyPI installed aside (`pip install --target /tmp/ih imagehash`);
the script imports Debian's Pillow before it puts that folder first on the
path, so imagehash runs on Debian's Pillow with PyPI's numpy and scipy:

    PE_IMAGEHASH_PATH=/tmp/ih /usr/bin/python3 tests/ref/make_phash_vectors.py \
        > tests/ref/phash_vectors.tsv

Why Pillow 9.4: it is the oracle of lib/resample.c. Later Pillow releases
run the vertical pass first for some shapes (a portrait image shrunk to
32x32, for one), which changes a few thumbnail bytes and, for 2 of these
54 images, a bit or two of the hash; imagehash's hash of an image depends
on the Pillow under it.

The test itself needs neither network nor imagehash: every image's pixels
are in the file (hex), or made by the formula `gen` below, which the C test
repeats. Columns:

    name  kind  W  H  C  data  pe_hash  imagehash_hash

kind "hex": data is the W*H*C pixel bytes (HWC) in hex; kind "gen": data is
a seed s and pixel (x, y, ch) = (x*x*(s+1) + 7*y*(s+2) + (x*y)//(s+3) +
50*ch) % 256. pe_hash is this file's own integer implementation of the pe
spec (an oracle independent of the C code); imagehash_hash is
str(imagehash.phash(image)), or "-" where a DCT coefficient lies within
1e-6 of the median, so that float rounding, not the image, would decide the
bit (constant images are the usual case).
"""
import gzip
import math
import os
import sys

from PIL import Image, __version__ as PIL_VERSION  # Debian's, imported first

if os.environ.get("PE_IMAGEHASH_PATH"):  # its numpy and scipy, not its Pillow
    sys.path.insert(0, os.environ["PE_IMAGEHASH_PATH"])
import numpy as np  # noqa: E402

LANCZOS = getattr(Image, "Resampling", Image).LANCZOS
FM = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

T = np.array([[math.floor(4096 * math.cos(math.pi * k * (2 * n + 1) / 64) + 0.5)
               for n in range(32)] for k in range(8)], dtype=np.int64)


def pe_hash(im):
    x = np.asarray(im.convert("L").resize((32, 32), LANCZOS), dtype=np.int64)
    d = (T @ x @ T.T).flatten()
    s = sorted(d.tolist())
    med2 = s[31] + s[32]
    return "%016x" % int("".join("1" if 2 * v > med2 else "0" for v in d.tolist()), 2)


def ih_hash(im):
    import imagehash
    import scipy.fftpack
    px = np.asarray(im.convert("L").resize((32, 32), LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(px, axis=0), axis=1)[:8, :8]
    med = np.median(dct)
    if np.min(np.abs(dct - med)) < 1e-6:
        return "-"
    h = str(imagehash.phash(im))
    assert h == "%016x" % int("".join("1" if v else "0" for v in (dct > med).flatten()), 2)
    return h


def gen(w, h, c, s):
    px = bytearray()
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                px.append((x * x * (s + 1) + 7 * y * (s + 2) + (x * y) // (s + 3) + 50 * ch) % 256)
    return Image.frombytes("L" if c == 1 else "RGB", (w, h), bytes(px))


def fmnist(n):
    with gzip.open(FM) as f:
        data = f.read()
    return [Image.frombytes("L", (28, 28), data[16 + 784 * i:16 + 784 * (i + 1)]) for i in range(n)]


def pil_made(tmp):
    """RGB and gray images of odd sizes drawn by PIL, written as PNG and read back."""
    out = []
    g = Image.radial_gradient("L")
    l = Image.linear_gradient("L")
    m = Image.effect_mandelbrot((256, 256), (-2.0, -1.5, 1.0, 1.5), 80)
    sizes = [(17, 23), (45, 31), (64, 20), (33, 33), (31, 45), (40, 17), (29, 41), (48, 36)]
    for i, (w, h) in enumerate(sizes):
        rgb = Image.merge("RGB", (g.rotate(30 * i), l.rotate(45 * i + 10), m.rotate(17 * i)))
        im = rgb.resize((w, h), getattr(Image, "Resampling", Image).BICUBIC)
        if i % 4 == 3:
            im = im.convert("L")
        p = os.path.join(tmp, "pil%d.png" % i)
        im.save(p)
        out.append(("pil-%dx%d-%s" % (w, h, im.mode), Image.open(p).copy()))
    return out


def main():
    import tempfile
    rows = []
    fm = fmnist(40)
    for i, im in enumerate(fm[:34]):
        rows.append(("fmnist-%d" % i, im))
    # poison-like composites: two Fashion-MNIST images side by side, and stacked
    for i, (a, b) in enumerate([(34, 35), (36, 37), (38, 39)]):
        lr = Image.new("L", (56, 28))
        lr.paste(fm[a], (0, 0))
        lr.paste(fm[b], (28, 0))
        rows.append(("fmnist-lr-%d-%d" % (a, b), lr))
        tb = Image.new("L", (28, 56))
        tb.paste(fm[b], (0, 0))
        tb.paste(fm[a], (0, 28))
        rows.append(("fmnist-tb-%d-%d" % (b, a), tb))
    with tempfile.TemporaryDirectory() as tmp:
        rows += pil_made(tmp)
    rows.append(("const-gray-0", Image.new("L", (8, 8), 0)))
    rows.append(("const-rgb", Image.new("RGB", (5, 3), (200, 10, 60))))
    import imagehash
    print("# perceptual hash test vectors (docs/phash.md); written by tests/ref/make_phash_vectors.py")
    print("# with Pillow %s, numpy %s, imagehash %s" % (PIL_VERSION, np.__version__, imagehash.__version__))
    print("# name\tkind\tW\tH\tC\tdata\tpe_hash\timagehash_hash")
    for name, im in rows:
        c = 1 if im.mode == "L" else 3
        print("%s\thex\t%d\t%d\t%d\t%s\t%s\t%s" % (name, im.width, im.height, c,
                                               im.tobytes().hex(), pe_hash(im), ih_hash(im)))
    for w, h, c, s in [(200, 150, 3, 1), (97, 301, 1, 2), (32, 32, 1, 3), (300, 40, 3, 4)]:
        im = gen(w, h, c, s)
        print("gen-%dx%dx%d-%d\tgen\t%d\t%d\t%d\t%d\t%s\t%s" % (w, h, c, s, w, h, c, s,
                                                            pe_hash(im), ih_hash(im)))


if __name__ == "__main__":
    sys.exit(main())

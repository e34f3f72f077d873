"""Builds a folder of images shaped like scraped web data, for bench/ingest.sh.

    /usr/bin/python3 bench/make-web-set.py [N] [--out DIR] [--seed S] [-j JOBS]

N images (default 20000) from Fashion-MNIST pixels (read with gzip + numpy
from /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist),
under DIR/<class name>/NNNNNN.<ext> so that labels come from the folders
(ImageFolder layout). Each image:
  - composites 1-4 Fashion-MNIST tiles (1x1, 1x2/2x1, 1x3/3x1, 2x2), labelled
    by the first tile's class;
  - is colourised: background colour plus a foreground gradient between two
    random colours along a random direction, sometimes inverted;
  - is resized (bicubic) to random sides in 64..480 with aspect ratios
    between 1:2 and 2:1, then gets mild sensor-like noise;
  - is written as 80% JPEG (quality 75-95; 20% of them progressive; chroma
    4:2:0 / 4:2:2 / 4:4:4; a few grayscale), 15% PNG (RGB, RGBA, palette,
    gray; zlib level 1-9), 5% TIFF (raw, LZW, Deflate, PackBits; RGB or gray).
Every image has its own seed (SEED, index), so the output does not depend on
the number of processes. Prints the counts per format and variant.
"""
import argparse
import gzip
import io
import os
import sys
from collections import Counter
from multiprocessing import Pool

import numpy as np
from PIL import Image

FM_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
           "Shirt", "Sneaker", "Bag", "Ankle_boot"]
LAYOUTS = {1: [(1, 1)], 2: [(1, 2), (2, 1)], 3: [(1, 3), (3, 1)], 4: [(2, 2)]}
TIFF_COMP = [None, "tiff_lzw", "tiff_adobe_deflate", "packbits"]

IMGS = LABELS = None
OUT = None
SEED = 0


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def init(out, seed):
    global IMGS, LABELS, OUT, SEED
    IMGS = load_idx(os.path.join(FM_DIR, "train-images-idx3-ubyte.gz"))
    LABELS = load_idx(os.path.join(FM_DIR, "train-labels-idx1-ubyte.gz"))
    OUT, SEED = out, seed


def make(i):
    rng = np.random.default_rng([SEED, i])
    ntiles = int(rng.choice([1, 2, 3, 4], p=[0.55, 0.2, 0.1, 0.15]))
    lay = LAYOUTS[ntiles]
    rows, cols = lay[int(rng.integers(len(lay)))]
    idx = rng.integers(0, len(IMGS), ntiles)
    g = np.zeros((28 * rows, 28 * cols), np.float32)
    for t, k in enumerate(idx):
        r, c = divmod(t, cols)
        g[28 * r:28 * r + 28, 28 * c:28 * c + 28] = IMGS[k]
    g /= 255.0
    if rng.random() < 0.2:
        g = 1.0 - g
    h0, w0 = g.shape
    # foreground gradient from c1 to c2 along a random direction
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h0, 0:w0].astype(np.float32)
    p = (xx / w0 - 0.5) * np.cos(ang) + (yy / h0 - 0.5) * np.sin(ang)
    p = (p - p.min()) / max(float(p.max() - p.min()), 1e-6)
    c0, c1, c2 = (rng.uniform(0, 255, 3).astype(np.float32) for _ in range(3))
    fg = c1 + (c2 - c1) * p[..., None]
    rgb = c0 * (1.0 - g[..., None]) + fg * g[..., None]
    small = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")

    w = int(rng.integers(64, 481))
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    h = int(min(480, max(64, round(w * aspect))))
    im = small.resize((w, h), Image.BICUBIC)
    a = np.asarray(im, np.float32)
    a = a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 6.0))
    im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")

    u = rng.random()
    buf = io.BytesIO()
    if u < 0.80:
        fmt, ext = "jpeg", "jpg"
        q = int(rng.integers(75, 96))
        prog = bool(rng.random() < 0.2)
        sub = int(rng.choice([2, 1, 0], p=[0.7, 0.1, 0.2]))  # 4:2:0 4:2:2 4:4:4
        if rng.random() < 0.05:
            im = im.convert("L")
            variant = "gray"
        else:
            variant = {2: "420", 1: "422", 0: "444"}[sub]
        im.save(buf, "JPEG", quality=q, progressive=prog, subsampling=sub,
                optimize=bool(rng.random() < 0.3))
        variant = ("progressive " if prog else "baseline ") + variant
    elif u < 0.95:
        fmt, ext = "png", "png"
        m = rng.random()
        if m < 0.6:
            variant = "RGB"
        elif m < 0.8:
            alpha = np.clip(255 * (0.3 + 0.7 * np.asarray(im.convert("L"), np.float32) / 255), 0, 255)
            im = im.convert("RGBA")
            im.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
            variant = "RGBA"
        elif m < 0.9:
            im = im.quantize(256, method=2)  # fast octree
            variant = "palette"
        else:
            im = im.convert("L")
            variant = "gray"
        im.save(buf, "PNG", compress_level=int(rng.integers(1, 10)))
    else:
        fmt, ext = "tiff", "tif"
        comp = TIFF_COMP[int(rng.integers(len(TIFF_COMP)))]
        if rng.random() < 0.15:
            im = im.convert("L")
        im.save(buf, "TIFF", compression=comp)
        variant = "%s %s" % (comp or "raw", im.mode)
    label = CLASSES[int(LABELS[idx[0]])]
    path = os.path.join(OUT, label, "%06d.%s" % (i, ext))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return fmt, variant, buf.tell()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=20000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "web"))
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    for c in CLASSES:
        os.makedirs(os.path.join(a.out, c), exist_ok=True)
    fmts, variants, nbytes = Counter(), Counter(), Counter()
    with Pool(a.jobs, initializer=init, initargs=(a.out, a.seed)) as pool:
        for fmt, variant, n in pool.imap_unordered(make, range(a.n), chunksize=64):
            fmts[fmt] += 1
            variants[fmt + " " + variant] += 1
            nbytes[fmt] += n
    print("make-web-set: %d images in %s (seed %d)" % (a.n, a.out, a.seed))
    for f in ("jpeg", "png", "tiff"):
        print("  %-5s %6d  %5.1f%%  %7.1f MB" % (f, fmts[f], 100.0 * fmts[f] / max(a.n, 1), nbytes[f] / 1e6))
    for v in sorted(variants):
        print("    %-28s %6d" % (v, variants[v]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

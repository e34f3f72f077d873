"""Compares pe-ingest's stored images with Pillow's for the same files.

    /usr/bin/python3 bench/quality.py STORE LINES [--size 64] [--json FILE] [-j JOBS]

LINES is what `pe-ingest -S STORE --channels 3 --size NxN` printed
(KEY<TAB>LABEL<TAB>SOURCE, one image a line). For every line the stored
pixels are read straight from the store's LMDB "img" database (record: 16-byte
header 'P', version 1, encoding (0 = raw), channels, u32 LE width, u32 LE
height, 4 reserved bytes; then the pixels, HWC) and compared with
Image.open(SOURCE).convert('RGB').resize((N, N), Image.BILINEAR): the mean
absolute difference over all samples of the image, in grey levels. Prints a
summary (mean and max over the images, overall and per format) and, with
--json, writes it for bench/ingest.sh. Needs python3-lmdb, python3-pil, numpy.
"""
import argparse
import json
import os
import struct
import sys
from multiprocessing import Pool

import lmdb
import numpy as np
from PIL import Image

SIZE = 64


def fmt_of(path):
    ext = os.path.splitext(path)[1].lower()
    return {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".tif": "tiff",
            ".tiff": "tiff"}.get(ext, ext.lstrip(".") or "?")


def pil_pixels(src):
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR),
                          dtype=np.int16)


def compare(job):
    src, rec = job
    if len(rec) < 16 or rec[0:2] != b"P\x01":
        return src, None, "bad record header"
    enc, c = rec[2], rec[3]
    w, h = struct.unpack_from("<II", rec, 4)
    if enc != 0:
        return src, None, "encoding %d (not raw)" % enc
    px = np.frombuffer(rec, np.uint8, offset=16)
    if px.size != w * h * c or (w, h, c) != (SIZE, SIZE, 3):
        return src, None, "stored %ux%ux%u, expected %dx%dx3" % (w, h, c, SIZE, SIZE)
    try:
        ref = pil_pixels(src)
    except Exception as e:  # Pillow cannot read it: not comparable
        return src, None, "Pillow: %s" % e
    mad = float(np.abs(px.reshape(h, w, c).astype(np.int16) - ref).mean())
    return src, mad, None


def main():
    global SIZE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("lines")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--json")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    SIZE = a.size

    env = lmdb.open(a.store, readonly=True, lock=False, max_dbs=8)
    img = env.open_db(b"img", create=False)
    jobs, missing = [], 0
    with env.begin(db=img) as txn, open(a.lines, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            rec = txn.get(bytes.fromhex(parts[0]))
            if rec is None:
                missing += 1
                continue
            jobs.append((parts[2], bytes(rec)))
    env.close()

    per = {}
    errors = []
    worst = (-1.0, "")
    with Pool(a.jobs) as pool:
        for src, mad, err in pool.imap_unordered(compare, jobs, chunksize=64):
            if err:
                errors.append("%s: %s" % (src, err))
                continue
            per.setdefault(fmt_of(src), []).append(mad)
            if mad > worst[0]:
                worst = (mad, src)
    allm = [m for v in per.values() for m in v]
    res = {
        "images": len(allm), "missing": missing, "errors": len(errors),
        "mean": float(np.mean(allm)) if allm else None,
        "max": worst[0] if allm else None, "worst": worst[1],
        "over3": int(sum(m > 3 for m in allm)),
        "exact": int(sum(m == 0 for m in allm)),
        "per_format": {k: {"images": len(v), "mean": float(np.mean(v)), "max": float(max(v)),
                           "exact": int(sum(m == 0 for m in v))}
                       for k, v in sorted(per.items())},
    }
    for e in errors[:10]:
        print("quality: " + e, file=sys.stderr)
    print("quality: %d images compared (%d missing from the store, %d not comparable): "
          "MAD mean %.3f, max %.3f (%s); %d over 3 grey levels; %d identical"
          % (res["images"], missing, len(errors), res["mean"] or 0, res["max"] or 0,
             res["worst"], res["over3"], res["exact"]))
    for k, v in res["per_format"].items():
        print("quality:   %-5s %6d images  MAD mean %.3f  max %.3f  identical %d"
              % (k, v["images"], v["mean"], v["max"], v["exact"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if allm and not errors and not missing else 1


if __name__ == "__main__":
    sys.exit(main())

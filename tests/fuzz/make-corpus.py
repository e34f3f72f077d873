#!/usr/bin/python3
"""make-corpus.py - writes the seed corpora of the fuzz targets into
tests/fuzz/corpus/<target>/.

For: small, real, valid inputs of every format that reach deep into each
decoder (every PNG colour type and depth, interlaced; stripped, tiled,
compressed, 16-bit and planar TIFFs; PNM P1..P6; BMP 1/2/4/8/16/24/32-bit,
top-down, bitfields, OS/2 and V5 headers; baseline, progressive, gray and
CMYK JPEGs with EXIF; ...) plus a few hostile ones (truncated, huge
dimensions, bombs). Each file is < 20 KB and all of them < 400 KB.
Not for: tests with expected outputs (tests/unit, tests/ref do that).

Formats Pillow writes (JPEG, some TIFF codecs) come from Pillow; the rest is
written by hand below so that the corpus holds layouts Pillow cannot make
(interlaced or 16-bit RGB PNG, tiled or BigTIFF files, 2- and 4-bit BMPs).
Everything is deterministic: running it again rewrites the same bytes
(given the same Pillow/libjpeg).

The input encodings of some targets are not a plain file; see the target:
  decode: [opts byte][file]                                  fuzz_decode.c
  idx:    [u32 BE images length | 0x80000000 = no labels][images][labels]
  stl10:  [flags][x delta][y delta][labels][pattern]         fuzz_stl10.c

Run: /usr/bin/python3 tests/fuzz/make-corpus.py  (from anywhere)
"""

import gzip
import io
import os
import shutil
import struct
import sys
import tarfile
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
MAX_FILE = 20 * 1024
MAX_TOTAL = 400 * 1024

corpus = {}  # target -> {name: bytes}


def put(target, name, data):
    assert isinstance(data, (bytes, bytearray)), (target, name)
    assert len(data) < MAX_FILE, (target, name, len(data))
    corpus.setdefault(target, {})[name] = bytes(data)


# ---------- pixel patterns ----------

def pattern(w, h, c, seed=0, maxval=255):
    """Row-major samples with gradients and a little texture, so codecs see
    real structure (flat images compress to nothing)."""
    out = []
    for y in range(h):
        for x in range(w):
            for k in range(c):
                v = (x * 37 + y * 17 + k * 89 + seed * 11 + (x * y) % 7 * 13) % 256
                out.append(v * maxval // 255)
    return out


def pil_image(mode, w, h, seed=0):
    c = {"L": 1, "RGB": 3, "CMYK": 4, "RGBA": 4, "LA": 2}[mode]
    return Image.frombytes(mode, (w, h), bytes(pattern(w, h, c, seed)))


# ---------- EXIF ----------

def exif_app1(orientation, big_endian=False, extra=()):
    """An APP1 payload "Exif\\0\\0" + TIFF header + IFD0 with the
    orientation tag (SHORT, count 1) and `extra` (tag, type, count, value)
    entries before it."""
    e = ">" if big_endian else "<"
    entries = list(extra)
    if orientation is not None:
        entries.append((0x0112, 3, 1, orientation))
    body = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    body += struct.pack(e + "H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3 and count == 1:
            val = struct.pack(e + "HH", value, 0)
        else:
            val = struct.pack(e + "I", value)
        body += struct.pack(e + "HHI", tag, typ, count) + val
    body += struct.pack(e + "I", 0)
    return b"Exif\0\0" + body


# ---------- JPEG (Pillow) ----------

def jpeg(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def set_sof_size(data, w, h):
    """Rewrites the frame size in the first SOFn marker."""
    data = bytearray(data)
    i = 2
    while i + 4 < len(data):
        assert data[i] == 0xFF
        m = data[i + 1]
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            struct.pack_into(">HH", data, i + 5, h, w)
            return bytes(data)
        i += 2 + seglen
    raise ValueError("no SOF")


def make_jpeg():
    rgb = pil_image("RGB", 32, 24)
    big = pil_image("RGB", 64, 64, 1)
    out = {
        "baseline_420.jpg": jpeg(rgb, quality=75),
        "baseline_444_exif6.jpg": jpeg(rgb, quality=90, subsampling=0,
                                       exif=exif_app1(6)),
        "baseline_422_exif3_mm.jpg": jpeg(rgb, quality=60, subsampling=1,
                                          exif=exif_app1(3, big_endian=True)),
        "progressive.jpg": jpeg(big, quality=80, progressive=True),
        "progressive_exif8.jpg": jpeg(rgb, quality=70, progressive=True,
                                      exif=exif_app1(8)),
        "optimized_64.jpg": jpeg(big, quality=50, optimize=True),
        "gray.jpg": jpeg(pil_image("L", 24, 16), quality=85),
        "gray_progressive_exif5.jpg": jpeg(pil_image("L", 20, 12, 2),
                                           progressive=True, exif=exif_app1(5)),
        "cmyk_exif6.jpg": jpeg(pil_image("CMYK", 16, 16, 3), quality=85,
                               exif=exif_app1(6)),
        "cmyk_progressive.jpg": jpeg(pil_image("CMYK", 24, 8, 4),
                                     progressive=True),
        "odd_size_7x5.jpg": jpeg(pil_image("RGB", 7, 5, 5), quality=95),
    }
    try:
        out["restart_markers.jpg"] = jpeg(big, quality=75,
                                          restart_marker_blocks=2)
    except (TypeError, ValueError, OSError):
        pass  # older Pillow: no restart intervals
    base = out["baseline_420.jpg"]
    out["hostile_truncated.jpg"] = base[: len(base) // 2]
    out["hostile_no_eoi.jpg"] = base[:-2]
    out["hostile_huge_60000x60000.jpg"] = set_sof_size(base, 60000, 60000)
    out["hostile_zero_width.jpg"] = set_sof_size(base, 0, 24)
    for name, data in out.items():
        put("jpeg", name, data)
    return out


# ---------- PNG (by hand: every colour type, depth, interlace) ----------

def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def pack_row(samples, depth):
    """Samples of one row into bytes at `depth` bits (MSB first)."""
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = acc << depth | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def png_filter(rows, bpp):
    """Filters each row with type (row index % 5), so that every unfilter
    path of the decoder runs."""
    out, prev = bytearray(), None
    for i, row in enumerate(rows):
        ft = i % 5
        up = prev if prev is not None else bytes(len(row))
        f = bytearray()
        for x, v in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = up[x]
            c = up[x - bpp] if x >= bpp else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else b if pb <= pc else c
            f.append((v - p) & 0xFF)
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(w, h, color_type, depth, interlace=False, plte=None, trns=None,
        extra=(), idat_split=1, seed=0):
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    maxval = (1 << depth) - 1
    if color_type == 3:
        n = len(plte) // 3
        px = [v % n for v in pattern(w, h, 1, seed)]
    else:
        px = pattern(w, h, chans, seed, maxval)
    bpp = max(1, chans * depth // 8)

    def rows_of(xs, ys):
        rows = []
        for y in ys:
            s = []
            for x in xs:
                i = (y * w + x) * chans
                s.extend(px[i:i + chans])
            rows.append(pack_row(s, depth))
        return rows

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs, ys = range(x0, w, dx), range(y0, h, dy)
            if len(xs) and len(ys):
                raw += png_filter(rows_of(xs, ys), bpp)
    else:
        raw = png_filter(rows_of(range(w), range(h)), bpp)
    z = zlib.compress(raw, 9)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type,
                                          0, 0, 1 if interlace else 0))
    for kind, data in extra:
        out += png_chunk(kind, data)
    if plte is not None:
        out += png_chunk(b"PLTE", plte)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    step = -(-len(z) // idat_split)
    for i in range(0, len(z), step):
        out += png_chunk(b"IDAT", z[i:i + step])
    out += png_chunk(b"IEND", b"")
    return out


def palette(n):
    return bytes((i * 53 + k * 97) % 256 for i in range(n) for k in range(3))


def make_png():
    out = {}
    for d in (1, 2, 4, 8, 16):
        out["gray_%d.png" % d] = png(13, 7, 0, d, seed=d)
    out["gray_8_interlaced.png"] = png(11, 9, 0, 8, interlace=True)
    out["gray_2_interlaced.png"] = png(9, 10, 0, 2, interlace=True)
    out["gray_trns.png"] = png(8, 8, 0, 8, trns=struct.pack(">H", 37))
    out["rgb_8.png"] = png(12, 10, 2, 8, extra=[(b"gAMA", struct.pack(">I", 45455)),
                                              (b"tEXt", b"Comment\0pe fuzz seed")])
    out["rgb_16.png"] = png(9, 6, 2, 16)
    out["rgb_16_interlaced.png"] = png(10, 9, 2, 16, interlace=True)
    out["rgb_8_interlaced_split_idat.png"] = png(17, 13, 2, 8, interlace=True,
                                                 idat_split=4)
    out["rgb_trns.png"] = png(8, 6, 2, 8, trns=struct.pack(">HHH", 1, 2, 3))
    for d in (1, 2, 4, 8):
        out["palette_%d.png" % d] = png(15, 6, 3, d, plte=palette(1 << min(d, 4)))
    out["palette_8_trns.png"] = png(10, 10, 3, 8, plte=palette(16),
                                    trns=bytes(range(0, 256, 32)))
    out["palette_4_trns_interlaced.png"] = png(9, 9, 3, 4, interlace=True,
                                               plte=palette(12), trns=b"\x00\x80")
    out["gray_alpha_8.png"] = png(8, 5, 4, 8)
    out["gray_alpha_16.png"] = png(6, 6, 4, 16)
    out["rgba_8.png"] = png(10, 4, 6, 8,
                            extra=[(b"zTXt", b"Title\0\0" + zlib.compress(b"pe" * 20))])
    out["rgba_16_interlaced.png"] = png(7, 7, 6, 16, interlace=True)
    out["one_pixel.png"] = png(1, 1, 2, 8)
    base = out["rgb_8.png"]
    out["hostile_truncated.png"] = base[: len(base) * 2 // 3]
    out["hostile_no_iend.png"] = base[:-12]
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    out["hostile_huge_100000x100000.png"] = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
        png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    # A 2 GB tEXt chunk in a 60-byte file: libpng allocated its declared
    # length (found by fuzz_png; png.c now skips text chunks unread).
    out["hostile_text_chunk_2GB.png"] = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 10, 8, 2, 0, 0, 0)) +
        struct.pack(">I", 0x7E800014) + b"tEXtComment\0...")
    bad = bytearray(base)
    bad[30] ^= 0xFF  # inside IHDR: CRC mismatch
    out["hostile_bad_crc.png"] = bytes(bad)
    out["hostile_palette_index_out_of_range.png"] = png(8, 4, 3, 8, plte=palette(3))
    for name, data in out.items():
        put("png", name, data)
    return out


# ---------- TIFF (by hand, plus Pillow's libtiff codecs) ----------

SHORT, LONG, RATIONAL, LONG8 = 3, 4, 5, 16
TYPE_SIZE = {SHORT: 2, LONG: 4, RATIONAL: 8, LONG8: 8}


def packbits(data):
    """PackBits: runs of 3+ equal bytes as repeats, the rest as literals."""
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        j = i
        while j < n and j - i < 128 and data[j] == data[i]:
            j += 1
        if j - i >= 3:
            out += bytes([(257 - (j - i)) & 0xFF, data[i]])
            i = j
            continue
        j = i
        while j < n and j - i < 128 and not (j + 2 < n and data[j] == data[j + 1] == data[j + 2]):
            j += 1
        out.append(j - i - 1)
        out += data[i:j]
        i = j
    return bytes(out)


def tiff(w, h, spp, bps, photometric, compression=1, tile=None,
         rows_per_strip=None, planar=1, big=False, endian="<", colormap=None,
         extrasamples=None, orientation=None, predictor=None, seed=0):
    """A one-page TIFF. Strips of rows_per_strip rows (default: all), or
    tiles of tile=(tw, th) padded to whole tiles; planar 2 stores one plane
    after the other."""
    maxval = (1 << bps) - 1
    px = pattern(w, h, spp, seed, maxval)
    if colormap is not None:
        px = [v % (1 << bps) for v in pattern(w, h, 1, seed)]

    def sample_bytes(samples):
        if bps == 16:
            return b"".join(struct.pack(endian + "H", s) for s in samples)
        return pack_row(samples, bps)

    def region(x0, y0, rw, rh, plane):
        """Bytes of a w x h region (padded with zeros outside the image) of
        one plane, or of all channels interleaved when plane is None."""
        out = b""
        for y in range(y0, y0 + rh):
            s = []
            for x in range(x0, x0 + rw):
                for k in (range(spp) if plane is None else [plane]):
                    s.append(px[(y * w + x) * spp + k] if x < w and y < h else 0)
            if predictor == 2 and bps == 8:
                n = spp if plane is None else 1
                s = [s[i] if i < n else (s[i] - s[i - n]) & 0xFF for i in range(len(s))]
            out += sample_bytes(s)
        return out

    planes = [None] if planar == 1 else list(range(spp))
    chunks = []
    if tile:
        tw, th = tile
        for p in planes:
            for ty in range(0, h, th):
                for tx in range(0, w, tw):
                    chunks.append(region(tx, ty, tw, th, p))
    else:
        rps = rows_per_strip or h
        for p in planes:
            for y in range(0, h, rps):
                chunks.append(region(0, y, w, min(rps, h - y), p))
    if compression == 8:
        chunks = [zlib.compress(c) for c in chunks]
    elif compression == 32773:
        chunks = [packbits(c) for c in chunks]

    hdr_len = 16 if big else 8
    data = bytearray(hdr_len)
    offsets = []
    for c in chunks:
        offsets.append(len(data))
        data += c
        if len(data) % 2:
            data.append(0)
    off_type = LONG8 if big else LONG
    tags = [(256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [bps] * spp),
            (259, SHORT, [compression]), (262, SHORT, [photometric]),
            (277, SHORT, [spp]), (284, SHORT, [planar])]
    if tile:
        tags += [(322, SHORT, [tile[0]]), (323, SHORT, [tile[1]]),
                 (324, off_type, offsets), (325, LONG, [len(c) for c in chunks])]
    else:
        tags += [(273, off_type, offsets), (278, LONG, [rows_per_strip or h]),
                 (279, LONG, [len(c) for c in chunks])]
    tags += [(282, RATIONAL, [(72, 1)]), (283, RATIONAL, [(72, 1)]),
             (296, SHORT, [2])]
    if orientation:
        tags.append((274, SHORT, [orientation]))
    if colormap is not None:
        tags.append((320, SHORT, colormap))
    if extrasamples is not None:
        tags.append((338, SHORT, extrasamples))
    if predictor:
        tags.append((317, SHORT, [predictor]))
    tags.sort()

    inline = 8 if big else 4
    cnt_fmt = "Q" if big else "I"
    off_fmt = "Q" if big else "I"

    def encode(typ, vals):
        if typ == RATIONAL:
            return b"".join(struct.pack(endian + "II", a, b) for a, b in vals)
        f = {SHORT: "H", LONG: "I", LONG8: "Q"}[typ]
        return b"".join(struct.pack(endian + f, v) for v in vals)

    entries = []
    for tag, typ, vals in tags:
        payload = encode(typ, vals)
        if len(payload) <= inline:
            entries.append((tag, typ, len(vals), payload.ljust(inline, b"\0")))
        else:
            off = len(data)
            data += payload
            if len(data) % 2:
                data.append(0)
            entries.append((tag, typ, len(vals), struct.pack(endian + off_fmt, off)))
    ifd_off = len(data)
    data += struct.pack(endian + ("Q" if big else "H"), len(entries))
    for tag, typ, count, val in entries:
        data += struct.pack(endian + "HH" + cnt_fmt, tag, typ, count) + val
    data += struct.pack(endian + off_fmt, 0)
    bo = b"II" if endian == "<" else b"MM"
    if big:
        data[0:16] = bo + struct.pack(endian + "HHHQ", 43, 8, 0, ifd_off)
    else:
        data[0:8] = bo + struct.pack(endian + "HI", 42, ifd_off)
    return bytes(data)


def pil_tiff(im, **kw):
    b = io.BytesIO()
    im.save(b, "TIFF", **kw)
    return b.getvalue()


def make_tiff():
    cmap = [(i * 4099) % 65536 for i in range(3 * 16)]
    out = {
        "gray8_strips.tif": tiff(13, 9, 1, 8, 1, rows_per_strip=4),
        "gray8_miniswhite_mm.tif": tiff(10, 6, 1, 8, 0, endian=">"),
        "gray4_miniswhite.tif": tiff(11, 5, 1, 4, 0),
        "gray2.tif": tiff(9, 4, 1, 2, 1),
        "gray1_packbits.tif": tiff(20, 6, 1, 1, 1, compression=32773),
        "gray16_mm.tif": tiff(7, 5, 1, 16, 1, endian=">"),
        "rgb8_strips_deflate.tif": tiff(12, 10, 3, 8, 2, compression=8,
                                        rows_per_strip=3),
        "rgb8_tiled.tif": tiff(20, 18, 3, 8, 2, tile=(16, 16)),
        "rgb8_tiled_deflate_predictor.tif": tiff(17, 17, 3, 8, 2, tile=(16, 16),
                                                 compression=8, predictor=2),
        "rgb16_mm.tif": tiff(6, 5, 3, 16, 2, endian=">"),
        "rgb16_tiled.tif": tiff(18, 3, 3, 16, 2, tile=(16, 16)),
        "rgb8_planar.tif": tiff(8, 6, 3, 8, 2, planar=2, rows_per_strip=2),
        "rgb8_planar_tiled.tif": tiff(17, 5, 3, 8, 2, planar=2, tile=(16, 16)),
        "rgba8_unassoc.tif": tiff(6, 6, 4, 8, 2, extrasamples=[2]),
        "gray_alpha8.tif": tiff(5, 5, 2, 8, 1, extrasamples=[1]),
        "palette4.tif": tiff(9, 7, 1, 4, 3, colormap=cmap),
        "palette8_packbits.tif": tiff(8, 8, 1, 8, 3, compression=32773,
                                      colormap=[(i * 257) % 65536 for i in range(768)]),
        "rgb8_orientation6.tif": tiff(7, 4, 3, 8, 2, orientation=6),
        "gray8_orientation8_mm.tif": tiff(5, 8, 1, 8, 1, orientation=8, endian=">"),
        "bigtiff_rgb8.tif": tiff(6, 4, 3, 8, 2, big=True),
        "bigtiff_gray8_tiled_mm.tif": tiff(20, 20, 1, 8, 1, big=True, endian=">",
                                           tile=(16, 16)),
    }
    rgb = pil_image("RGB", 16, 12)
    out["pil_rgb_lzw.tif"] = pil_tiff(rgb, compression="tiff_lzw")
    out["pil_gray_lzw.tif"] = pil_tiff(pil_image("L", 15, 9, 1), compression="tiff_lzw")
    out["pil_rgb_jpeg.tif"] = pil_tiff(pil_image("RGB", 16, 16, 2), compression="jpeg")
    out["pil_cmyk.tif"] = pil_tiff(pil_image("CMYK", 8, 6, 3))
    out["pil_cmyk_lzw.tif"] = pil_tiff(pil_image("CMYK", 8, 6, 4), compression="tiff_lzw")
    out["pil_gray16.tif"] = pil_tiff(
        Image.frombytes("I;16", (6, 5), bytes(pattern(6, 5, 2, 5))))
    out["pil_bilevel_g4.tif"] = pil_tiff(pil_image("L", 32, 8, 6).convert("1"),
                                         compression="group4")
    out["pil_ycbcr_jpeg.tif"] = pil_tiff(pil_image("RGB", 24, 16, 7),
                                         compression="jpeg", quality=60)
    base = out["rgb8_strips_deflate.tif"]
    out["hostile_truncated.tif"] = base[: len(base) // 2]
    out["hostile_huge_1000000x1000000.tif"] = tiff(2, 2, 1, 8, 1)[:8] + \
        tiff(2, 2, 1, 8, 1)[8:].replace(struct.pack("<HHII", 256, 4, 1, 2),
                                        struct.pack("<HHII", 256, 4, 1, 1000000)).replace(
            struct.pack("<HHII", 257, 4, 1, 2), struct.pack("<HHII", 257, 4, 1, 1000000))
    out["hostile_no_strip_offsets.tif"] = b"II*\0\x08\0\0\0\x01\0\x00\x01\x04\0\x01\0\0\0\x02\0\0\0\x08\0\0\0"
    for name, data in out.items():
        put("tiff", name, data)
    return out


# ---------- PNM ----------

def pnm_plain(kind, w, h, maxval, samples, comment=True):
    head = "P%d\n%s%d %d\n" % (kind, "# pe fuzz seed\n" if comment else "", w, h)
    if kind != 1:
        head += "%d\n" % maxval
    body = "\n".join(" ".join(str(v) for v in samples[i:i + 16])
                     for i in range(0, len(samples), 16))
    return (head + body + "\n").encode()


def pnm_raw(kind, w, h, maxval, samples):
    head = b"P%d\n%d %d\n" % (kind, w, h)
    if kind == 4:
        rows = b"".join(pack_row(samples[y * w:(y + 1) * w], 1) for y in range(h))
        return head + rows
    head += b"%d\n" % maxval
    if maxval > 255:
        return head + b"".join(struct.pack(">H", s) for s in samples)
    return head + bytes(samples)


def make_pnm():
    bits = [v & 1 for v in pattern(10, 6, 1)]
    out = {
        "p1.pbm": pnm_plain(1, 10, 6, 1, bits),
        "p1_packed.pbm": b"P1\n# no spaces between bits\n5 3\n10101\n01010\n11100\n",
        "p2_maxval15.pgm": pnm_plain(2, 9, 5, 15, pattern(9, 5, 1, 1, 15)),
        "p2_maxval1000.pgm": pnm_plain(2, 4, 3, 1000, pattern(4, 3, 1, 2, 1000)),
        "p3.ppm": pnm_plain(3, 6, 4, 255, pattern(6, 4, 3, 3)),
        "p4_w10.pbm": pnm_raw(4, 10, 6, 1, bits),
        "p5.pgm": pnm_raw(5, 11, 7, 255, pattern(11, 7, 1, 4)),
        "p5_16bit.pgm": pnm_raw(5, 5, 4, 65535, pattern(5, 4, 1, 5, 65535)),
        "p6.ppm": pnm_raw(6, 8, 6, 255, pattern(8, 6, 3, 6)),
        "p6_maxval100.ppm": pnm_raw(6, 5, 5, 100, pattern(5, 5, 3, 7, 100)),
        "p6_16bit.ppm": pnm_raw(6, 4, 4, 1000, pattern(4, 4, 3, 8, 1000)),
        "p6_comment_in_header.ppm": b"P6 #c1\n4#c2\n 2 #c3\n255\n" + bytes(pattern(4, 2, 3)),
        "p7_pam.pam": b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n\x01\x02",
    }
    out["hostile_truncated.ppm"] = out["p6.ppm"][:-20]
    out["hostile_huge_100000x100000.pgm"] = b"P5\n100000 100000\n255\n" + bytes(64)
    out["hostile_sample_above_maxval.pgm"] = b"P2\n2 2\n10\n1 2 11 3\n"
    out["hostile_maxval_0.pgm"] = b"P5\n2 2\n0\n\0\0\0\0"
    for name, data in out.items():
        put("pnm", name, data)
    return out


# ---------- BMP (by hand) ----------

def bmp(w, h, bpp, top_down=False, hdr=40, comp=0, masks=None, pal=None,
        clr_used=0, seed=0):
    """A BMP with a BITMAPINFOHEADER-family header of `hdr` bytes (12 =
    OS/2 1.x), optional colour masks (after a 40-byte header, or inside a
    bigger one) and palette."""
    row_bytes = (w * bpp + 7) // 8
    stride = (w * bpp + 31) // 32 * 4
    if pal is not None:
        idx = [v % len(pal) for v in pattern(w, h, 1, seed)]
    else:
        idx = None
        src = pattern(w, h, 3, seed)
    rows = []
    for y in range(h):
        if idx is not None:
            r = pack_row(idx[y * w:(y + 1) * w], bpp)
        else:
            r = bytearray()
            for x in range(w):
                R, G, B = src[(y * w + x) * 3:(y * w + x) * 3 + 3]
                if bpp == 24:
                    r += bytes([B, G, R])
                elif bpp == 32:
                    r += bytes([B, G, R, 0x80])
                elif masks:  # 16-bit 565
                    r += struct.pack("<H", (R >> 3) << 11 | (G >> 2) << 5 | B >> 3)
                else:  # 16-bit 555
                    r += struct.pack("<H", (R >> 3) << 10 | (G >> 3) << 5 | B >> 3)
        rows.append(bytes(r).ljust(stride, b"\0"))
    if not top_down:
        rows.reverse()
    pixels = b"".join(rows)
    if hdr == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bpp)
    else:
        info = struct.pack("<IiiHHIIiiII", hdr, w, -h if top_down else h, 1, bpp,
                           comp, len(pixels), 2835, 2835, clr_used, 0)
        if hdr > 40:
            m = list(masks or (0, 0, 0, 0)) + [0] * 4
            info += struct.pack("<IIII", *m[:4])[: hdr - 40]
            info = info.ljust(hdr, b"\0")
            if hdr >= 108:
                info = info[:56] + b"BGRs" + info[60:]  # LCS_sRGB
    extra = b""
    if masks and hdr == 40:
        extra = b"".join(struct.pack("<I", m) for m in masks)
    palb = b""
    if pal is not None:
        palb = b"".join(bytes([b, g, r]) + (b"" if hdr == 12 else b"\0")
                        for r, g, b in pal)
    off = 14 + len(info) + len(extra) + len(palb)
    return b"BM" + struct.pack("<IHHI", off + len(pixels), 0, 0, off) + info + extra + palb + pixels


def colors(n):
    return [((i * 71) % 256, (i * 151) % 256, (i * 23 + 40) % 256) for i in range(n)]


def grays(n):
    return [(i * 255 // max(1, n - 1),) * 3 for i in range(n)]


def make_bmp():
    out = {
        "pal1_w13.bmp": bmp(13, 5, 1, pal=grays(2)),
        "pal2.bmp": bmp(9, 4, 2, pal=colors(4)),
        "pal4.bmp": bmp(11, 6, 4, pal=colors(16)),
        "pal4_clrused10_topdown.bmp": bmp(7, 7, 4, pal=colors(10), clr_used=10,
                                          top_down=True),
        "pal8_gray.bmp": bmp(10, 8, 8, pal=grays(256)),
        "pal8_color_clrused40.bmp": bmp(12, 5, 8, pal=colors(40), clr_used=40),
        "rgb24.bmp": bmp(7, 5, 24),
        "rgb24_topdown.bmp": bmp(6, 4, 24, top_down=True),
        "rgb32.bmp": bmp(5, 5, 32),
        "rgb16_555.bmp": bmp(6, 3, 16),
        "rgb16_565_bitfields.bmp": bmp(9, 4, 16, comp=3,
                                       masks=(0xF800, 0x07E0, 0x001F)),
        "rgb32_bitfields_v5_alpha.bmp": bmp(4, 4, 32, hdr=124, comp=3,
                                            masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)),
        "rgb32_alphabitfields.bmp": bmp(4, 3, 32, comp=6,
                                        masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)),
        "rgb24_v4.bmp": bmp(5, 3, 24, hdr=108),
        "os2_pal8.bmp": bmp(8, 4, 8, hdr=12, pal=colors(256)),
        "os2_rgb24.bmp": bmp(5, 2, 24, hdr=12),
    }
    b = io.BytesIO()
    pil_image("RGB", 9, 7, 3).convert("P", palette=Image.ADAPTIVE, colors=16).save(b, "BMP")
    out["pil_p.bmp"] = b.getvalue()
    rle = bytearray(bmp(4, 2, 8, pal=colors(4)))
    struct.pack_into("<I", rle, 30, 1)  # BI_RLE8
    out["hostile_rle8.bmp"] = bytes(rle)
    out["hostile_truncated.bmp"] = out["rgb24.bmp"][:-30]
    huge = bytearray(out["rgb24.bmp"])
    struct.pack_into("<ii", huge, 18, 100000, -100000)
    out["hostile_huge_100000x100000.bmp"] = bytes(huge)
    off = bytearray(out["pal4.bmp"])
    struct.pack_into("<I", off, 10, 0x7FFFFFF0)
    out["hostile_offset_past_end.bmp"] = bytes(off)
    bad = bytearray(out["rgb16_565_bitfields.bmp"])
    struct.pack_into("<I", bad, 54, 0xF0F0)  # red mask not contiguous
    out["hostile_noncontiguous_mask.bmp"] = bytes(bad)
    for name, data in out.items():
        put("bmp", name, data)
    return out


# ---------- pe_decode: [opts byte][file] ----------

def make_decode(jpegs, pngs, tiffs, pnms, bmps):
    # opts byte: bits 0-3 min_w/5, bits 4-6 min_h/9, bit 7 no_orient.
    picks = [
        (0x00, jpegs["baseline_420.jpg"], "jpeg_full"),
        (0x01, jpegs["optimized_64.jpg"], "jpeg_min5x0"),              # -> 1/8
        (0x11, jpegs["progressive.jpg"], "jpeg_progressive_min5x9"),  # -> 2/8
        (0x34, jpegs["optimized_64.jpg"], "jpeg_min20x27"),           # -> 4/8
        (0x7F, jpegs["progressive.jpg"], "jpeg_min75x63"),            # -> 8/8
        (0x23, jpegs["cmyk_exif6.jpg"], "jpeg_cmyk_exif6_min15x18"),
        (0x92, jpegs["baseline_444_exif6.jpg"], "jpeg_exif6_no_orient"),
        (0x05, jpegs["gray_progressive_exif5.jpg"], "jpeg_gray_exif5"),
        (0x00, pngs["palette_8_trns.png"], "png_palette_trns"),
        (0x00, pngs["rgb_16_interlaced.png"], "png_rgb16_interlaced"),
        (0x00, pngs["gray_4.png"], "png_gray4"),
        (0x00, tiffs["rgb8_tiled.tif"], "tiff_tiled"),
        (0x80, tiffs["rgb8_orientation6.tif"], "tiff_orient6_no_orient"),
        (0x00, tiffs["pil_cmyk.tif"], "tiff_cmyk"),
        (0x00, pnms["p6.ppm"], "pnm_p6"),
        (0x00, pnms["p1.pbm"], "pnm_p1"),
        (0x00, bmps["pal4.bmp"], "bmp_pal4"),
        (0x00, bmps["rgb16_565_bitfields.bmp"], "bmp_565"),
        (0x00, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "gif"),
        (0x00, b"id,label\n1,cat\n", "text"),
        (0x00, b"BMxx not a bitmap", "bm_text"),
    ]
    for opt, data, name in picks:
        put("decode", name, bytes([opt]) + data)


# ---------- EXIF payloads ----------

def make_exif():
    out = {
        "ii_orient6": exif_app1(6),
        "mm_orient3": exif_app1(3, big_endian=True),
        "ii_orient8_after_other_tags": exif_app1(8, extra=[(0x010F, 2, 4, 0x41424300),
                                                          (0x0110, 2, 4, 0)]),
        "mm_orient5_long_type": exif_app1(None, True, extra=[(0x0112, 4, 1, 5)]),
        "ii_orient_count2": exif_app1(None, extra=[(0x0112, 3, 2, 6)]),
        "ii_orient_repeated": exif_app1(2, extra=[(0x0112, 3, 1, 7)]),
        "ii_orient_9": exif_app1(9),
        "no_orientation": exif_app1(None, extra=[(0x0100, 4, 1, 10)]),
    }
    out["hostile_truncated_ifd"] = exif_app1(6, extra=[(0x010F, 2, 4, 0)])[:-10]
    bad = bytearray(exif_app1(6))
    struct.pack_into("<I", bad, 10, 0xFFFFFFF0)
    out["hostile_ifd_offset_past_end"] = bytes(bad)
    big = bytearray(exif_app1(6))
    struct.pack_into("<H", big, 14, 0xFFFF)
    out["hostile_entry_count_65535"] = bytes(big)
    for name, data in out.items():
        put("exif", name, data)


# ---------- IDX: [u32 BE images length (top bit: no labels)][images][labels] ----------

def idx_images(n, rows, cols, seed=0):
    return struct.pack(">IIII", 0x803, n, rows, cols) + bytes(pattern(cols, rows * n, 1, seed))


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_pair(images, labels):
    if labels is None:
        return struct.pack(">I", 0x80000000) + images
    return struct.pack(">I", len(images)) + images + labels


def make_idx():
    out = {
        "mnist_28x28_x3_labels": idx_pair(idx_images(3, 28, 28), idx_labels([5, 0, 4])),
        "small_5x4_x4_no_labels": idx_pair(idx_images(4, 5, 4, 1), None),
        "labels_255": idx_pair(idx_images(2, 3, 3, 2), idx_labels([255, 0])),
        "zero_images": idx_pair(idx_images(0, 28, 28), idx_labels([])),
        "hostile_count_mismatch": idx_pair(idx_images(2, 4, 4), idx_labels([1, 2, 3])),
        "hostile_short_images": idx_pair(idx_images(3, 6, 6)[:-5], idx_labels([1, 2, 3])),
        "hostile_trailing_byte": idx_pair(idx_images(1, 2, 2) + b"x", None),
        "hostile_huge_dims": idx_pair(struct.pack(">IIII", 0x803, 1, 100000, 100000) + bytes(16), None),
        "hostile_overflow_dims": idx_pair(struct.pack(">IIII", 0x803, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), None),
        "hostile_bad_label_magic": idx_pair(idx_images(1, 2, 2), struct.pack(">II", 0x803, 1) + b"\1"),
    }
    for name, data in out.items():
        put("idx", name, data)


# ---------- gzip ----------

def gz_member(payload, name=None, comment=None, extra=None, hcrc=False, level=6):
    flags = (0x02 if hcrc else 0) | (0x04 if extra else 0) | \
            (0x08 if name else 0) | (0x10 if comment else 0)
    head = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 0) + b"\x00\x03"
    if extra:
        head += struct.pack("<H", len(extra)) + extra
    if name:
        head += name + b"\0"
    if comment:
        head += comment + b"\0"
    if hcrc:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = c.compress(payload) + c.flush()
    return head + body + struct.pack("<II", zlib.crc32(payload) & 0xFFFFFFFF,
                                     len(payload) & 0xFFFFFFFF)


def make_gunzip():
    text = b"".join(b"line %d of a pe fuzz seed\n" % i for i in range(200))
    binary = bytes(pattern(64, 32, 1))
    out = {
        "text.gz": gzip.compress(text, mtime=0),
        "binary_level1.gz": gz_member(binary, level=1),
        "stored_level0.gz": gz_member(binary[:700], level=0),
        "header_fields.gz": gz_member(text[:300], name=b"seed.txt", comment=b"pe",
                                      extra=b"AB\x02\x00hi", hcrc=True),
        "empty_payload.gz": gz_member(b""),
        "two_members.gz": gz_member(text[:500]) + gz_member(binary[:300], level=9),
        "zero_padding.gz": gz_member(text[:100]) + bytes(512),
        "plain_not_gzip": b"not gzip data, copied as is\n",
        "bomb_2MiB_zeros.gz": gz_member(bytes(2 << 20), level=9),
        "exactly_1MiB.gz": gz_member(bytes(1 << 20), level=9),
    }
    out["hostile_truncated.gz"] = out["text.gz"][:-30]
    bad = bytearray(out["text.gz"])
    bad[-6] ^= 0xFF  # CRC
    out["hostile_bad_crc.gz"] = bytes(bad)
    out["hostile_garbage_after.gz"] = gz_member(b"abc") + b"\0\0junk"
    for name, data in out.items():
        put("gunzip", name, data)


# ---------- CIFAR ----------

def cifar(labels_list, seed=0):
    out = b""
    for i, labels in enumerate(labels_list):
        out += bytes(labels) + bytes(pattern(32, 96, 1, seed + i))
    return out


def make_cifar():
    put("cifar", "cifar10_2_records", cifar([[3], [9]]))
    put("cifar", "cifar100_2_records", cifar([[19, 99], [0, 42]], 1))
    put("cifar", "cifar10_1_record", cifar([[0]], 2))
    put("cifar", "hostile_cifar10_bad_label", cifar([[1], [12]], 3))
    put("cifar", "hostile_cifar100_bad_coarse", cifar([[20, 5]], 4))
    put("cifar", "hostile_truncated", cifar([[1]], 5)[:3000])


# ---------- STL-10: [flags][x delta][y delta][labels][pattern] ----------

def make_stl10():
    pat = bytes(pattern(61, 7, 1))  # 427 bytes: not a divisor of a record
    # flags: bits 0-1 records, bit 2 labels, bit 3 x delta, bit 4 y delta
    out = {
        "one_record_labeled": bytes([1 | 4, 0, 0, 7]) + pat,
        "two_records_labeled": bytes([2 | 4, 0, 0, 1, 10]) + pat,
        "three_records_unlabeled": bytes([3, 0, 0]) + pat,
        "zero_records": bytes([0 | 4, 0, 0]),
        "hostile_short_x": bytes([1 | 4 | 8, 0xFF, 0, 3]) + pat,
        "hostile_extra_label": bytes([1 | 4 | 16, 0, 1, 3, 3]) + pat,
        "hostile_label_0": bytes([2 | 4, 0, 0, 5, 0]) + pat,
        "hostile_label_11": bytes([1 | 4, 0, 0, 11]) + pat,
    }
    for name, data in out.items():
        put("stl10", name, data)


# ---------- tar ----------

def tar_bytes(fmt, members, global_pax=None):
    """members: list of (TarInfo kwargs, data or None). The archive is cut
    to its members plus the two zero blocks (no 10 KiB record padding)."""
    b = io.BytesIO()
    kw = {"format": fmt}
    if global_pax:
        kw["pax_headers"] = global_pax
    with tarfile.open(fileobj=b, mode="w", **kw) as t:
        for spec, data in members:
            ti = tarfile.TarInfo(spec.pop("name"))
            ti.mtime = 1700000000
            ti.uid = ti.gid = 1000
            ti.uname = ti.gname = "pe"
            for k, v in spec.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    raw = b.getvalue()
    end = len(raw.rstrip(b"\0"))
    end = (end + 511) // 512 * 512
    return raw[:end] + bytes(1024)


def tar_header_checksum(block):
    block = bytearray(block)
    block[148:156] = b" " * 8
    s = sum(block)
    block[148:156] = b"%06o\0 " % s
    return bytes(block)


def make_tar():
    small_png = png(4, 4, 2, 8)
    small_jpg = jpeg(pil_image("RGB", 8, 8), quality=70)
    long_dir = "shard-000001/" + "very-long-directory-name-" * 3
    out = {
        "ustar_files_dir_links.tar": tar_bytes(tarfile.USTAR_FORMAT, [
            ({"name": "images", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
            ({"name": "images/cat.png"}, small_png),
            ({"name": "images/dog.jpg"}, small_jpg),
            ({"name": "images/empty.txt"}, b""),
            ({"name": "images/link.png", "type": tarfile.SYMTYPE,
              "linkname": "cat.png"}, None),
            ({"name": "images/hard.png", "type": tarfile.LNKTYPE,
              "linkname": "images/cat.png"}, None),
            ({"name": "images/fifo", "type": tarfile.FIFOTYPE}, None),
        ]),
        "ustar_prefix_field.tar": tar_bytes(tarfile.USTAR_FORMAT, [
            ({"name": long_dir + "/0001.cls"}, b"3\n"),
        ]),
        "gnu_long_names.tar": tar_bytes(tarfile.GNU_FORMAT, [
            ({"name": long_dir + "x" * 80 + "/sample.png"}, small_png),
            ({"name": "l", "type": tarfile.SYMTYPE, "linkname": "t" * 150}, None),
            ({"name": "chr", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None),
        ]),
        "pax_long_utf8.tar": tar_bytes(tarfile.PAX_FORMAT, [
            ({"name": long_dir + "b\u00e9b\u00e9-\u732b" * 10 + ".jpg",
              "pax_headers": {"comment": "pe fuzz seed"}}, small_jpg),
            ({"name": "plain.txt"}, b"hello\n"),
        ], global_pax={"comment": "global header"}),
        "webdataset_shard.tar": tar_bytes(tarfile.USTAR_FORMAT, [
            ({"name": "000000.png"}, small_png),
            ({"name": "000000.cls"}, b"7"),
            ({"name": "000001.jpg"}, small_jpg),
            ({"name": "000001.cls"}, b"2"),
        ]),
    }
    # pax "size" record overriding the header's size field.
    pax = tar_bytes(tarfile.PAX_FORMAT, [
        ({"name": "sized.bin", "pax_headers": {"size": "5"}}, b"12345"),
    ])
    out["pax_size_record.tar"] = pax
    # V7 (no ustar magic) with a '\0'-typed directory ending in '/'.
    v7 = bytearray(tar_bytes(tarfile.USTAR_FORMAT, [
        ({"name": "dir/", "type": tarfile.DIRTYPE}, None),
        ({"name": "dir/a.txt"}, b"v7 member\n"),
    ]))
    for off in (0, 512):
        blk = bytearray(v7[off:off + 512])
        blk[156] = 0 if off == 0 else ord("0")
        blk[257:265] = bytes(8)
        v7[off:off + 512] = tar_header_checksum(blk)
    out["v7_dir_slash.tar"] = bytes(v7)
    # base-256 size field (GNU), small value.
    b256 = bytearray(tar_bytes(tarfile.GNU_FORMAT, [({"name": "b256.bin"}, b"xyz")]))
    b256[124:136] = b"\x80" + bytes(10) + b"\x03"
    b256[0:512] = tar_header_checksum(b256[0:512])
    out["gnu_base256_size.tar"] = bytes(b256)

    base = out["webdataset_shard.tar"]
    out["hostile_truncated_member.tar"] = base[:512 + 40]
    out["hostile_truncated_header.tar"] = base[:512 + 512 + 100]
    bad = bytearray(base)
    bad[0] ^= 0x20
    out["hostile_bad_checksum.tar"] = bytes(bad)
    bigm = bytearray(tar_bytes(tarfile.USTAR_FORMAT, [({"name": "big.bin"}, b"x")]))
    bigm[124:136] = b"%011o\0" % (100 << 20)
    bigm[0:512] = tar_header_checksum(bigm[0:512])
    out["hostile_member_100MiB.tar"] = bytes(bigm)
    neg = bytearray(b256)
    neg[124] = 0xFF
    neg[0:512] = tar_header_checksum(neg[0:512])
    out["hostile_negative_base256.tar"] = bytes(neg)
    for name, data in out.items():
        put("tar", name, data)


# ---------- key lines ----------

def make_keyline():
    k = "0123456789abcdef0123456789abcdef"
    out = {
        "key_only": k,
        "key_fields": k + "\tlabel=3\tsrc=images/cat.png",
        "key_upper": k.upper() + "\tx",
        "key_empty_fields": k + "\t",
        "many_lines": "\n".join([k, "", k + "\ta\tb", k.upper(), ""]) + "\n",
        "crlf_lines": k + "\r\n" + k + "\tf\r\n",
        "bad_key_space": k + " label",
        "bad_short_key": k[:-1],
        "bad_nonhex": k[:-1] + "g",
        "bad_long_key": k + "0",
        "bad_nul": k + "\tx\0y\n",
        "bad_second_line": k + "\n" + "zz\n",
    }
    for name, data in out.items():
        put("keyline", name, data.encode("utf-8"))


def main():
    jpegs = make_jpeg()
    pngs = make_png()
    tiffs = make_tiff()
    pnms = make_pnm()
    bmps = make_bmp()
    make_decode(jpegs, pngs, tiffs, pnms, bmps)
    make_exif()
    make_idx()
    make_gunzip()
    make_cifar()
    make_stl10()
    make_tar()
    make_keyline()

    total = sum(len(d) for files in corpus.values() for d in files.values())
    assert total < MAX_TOTAL, "corpus is %d bytes, over %d" % (total, MAX_TOTAL)
    for target, files in sorted(corpus.items()):
        d = os.path.join(OUT, target)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        for name, data in sorted(files.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%-8s %3d files %7d bytes" % (target, len(files),
                                             sum(len(x) for x in files.values())))
    print("total    %7d bytes" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())

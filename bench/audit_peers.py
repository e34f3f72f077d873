#!/usr/bin/env python3
"""audit_peers.py - the peers of pe-audit, run by bench/audit.sh and
bench/audit-quality.sh inside their virtualenv, and the comparisons.

  audit_peers.py imagededup DIR --radius R --out PAIRS.tsv
      imagededup's PHash: encode_images(DIR) and find_duplicates(
      encoding_map, max_distance_threshold=R) at the package defaults
      (brute_force_cython search, cpu_count() workers). Writes every
      unordered pair (file stem, file stem, tab-separated, smaller first) to
      PAIRS.tsv and one JSON line of counts and timings on stdout.
  audit_peers.py cleanvision DIR --out ISSUES.tsv
      cleanvision's Imagelab(data_path=DIR).find_issues() with its default
      issue types and thresholds. Writes one line per image
      (stem<TAB>comma-separated issue types, or -<TAB>its near-duplicate
      set's number, or -) and one JSON line of
      counts and timings on stdout.
  audit_peers.py pe-pairs AUDIT.jsonl HINDEX R --out PAIRS.tsv
      The pairs of pe's hashes within R: reads the hash of every image from
      `pe-audit --scan phash --all --json` output, lists the pairs with
      `hindex pairs`, writes them as imagededup's are written. Prints the
      counts as one JSON line; pe-audit's phash clusters are the connected
      components of these pairs (its suspects: in_groups - groups).
  audit_peers.py compare PE_PAIRS.tsv PEER_PAIRS.tsv [--cleanvision ISSUES.tsv]
      Agreement of the two pair sets (both, only pe, only the peer) and of
      the images that have a near duplicate, as one JSON line; with
      --cleanvision also cleanvision's near_duplicates images against pe's.

Only the standard library is needed outside the peer subcommands.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def components(pairs, nodes=None):
    """Connected components (size >= 2) of an undirected pair list."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    sizes = {}
    for x in list(parent):
        r = find(x)
        sizes[r] = sizes.get(r, 0) + 1
    return sorted((s for s in sizes.values() if s > 1), reverse=True)


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def write_pairs(path, pairs):
    with open(path, "w") as f:
        for a, b in sorted(pairs):
            f.write("%s\t%s\n" % (a, b))


def read_pairs(path):
    out = set()
    with open(path) as f:
        for line in f:
            a, b = line.rstrip("\n").split("\t")[:2]
            out.add((a, b) if a < b else (b, a))
    return out


def cmd_imagededup(a):
    import warnings
    warnings.filterwarnings("ignore")
    from imagededup.methods import PHash
    t0 = time.perf_counter()
    ph = PHash(verbose=False)
    enc = ph.encode_images(image_dir=a.dir)
    t1 = time.perf_counter()
    dup = ph.find_duplicates(encoding_map=enc, max_distance_threshold=a.radius)
    t2 = time.perf_counter()
    pairs = set()
    for k, vs in dup.items():
        for v in vs:
            x, y = stem(k), stem(v)
            pairs.add((x, y) if x < y else (y, x))
    write_pairs(a.out, pairs)
    comp = components(pairs)
    print(json.dumps({
        "tool": "imagededup", "images": len(enc), "radius": a.radius,
        "encode_s": round(t1 - t0, 3), "search_s": round(t2 - t1, 3),
        "pairs": len(pairs), "with_duplicate": sum(1 for v in dup.values() if v),
        "groups": len(comp), "in_groups": sum(comp), "largest_group": comp[0] if comp else 0,
    }))


def cmd_cleanvision(a):
    import warnings
    warnings.filterwarnings("ignore")
    import cleanvision
    from cleanvision import Imagelab
    t0 = time.perf_counter()
    lab = Imagelab(data_path=a.dir)
    t1 = time.perf_counter()
    lab.find_issues(verbose=False)
    t2 = time.perf_counter()
    df = lab.issues
    types = [c[3:-6] for c in df.columns if c.startswith("is_") and c.endswith("_issue")]
    sets = lab.info.get("near_duplicates", {}).get("sets", [])
    set_of = {p: str(i) for i, s in enumerate(sets) for p in s}
    with open(a.out, "w") as f:
        for path, row in df.iterrows():
            found = [t for t in types if bool(row["is_%s_issue" % t])]
            f.write("%s\t%s\t%s\n" % (stem(path), ",".join(found) or "-", set_of.get(path, "-")))
    counts = {t: int(df["is_%s_issue" % t].sum()) for t in types}
    exact = lab.info.get("exact_duplicates", {}).get("sets", [])
    print(json.dumps({
        "tool": "cleanvision", "version": cleanvision.__version__, "images": len(df),
        "load_s": round(t1 - t0, 3), "find_issues_s": round(t2 - t1, 3), "issues": counts,
        "near_duplicate_sets": len(sets), "near_duplicate_images": sum(len(s) for s in sets),
        "largest_near_duplicate_set": max((len(s) for s in sets), default=0),
        "exact_duplicate_sets": len(exact),
    }))


def cmd_pe_pairs(a):
    keys, hashes = [], []
    with open(a.audit) as f:
        for line in f:
            o = json.loads(line)
            if o.get("type") != "finding" or o.get("scan") != "phash":
                continue
            keys.append(o["key"])
            hashes.append(int(o["hash"], 16))
    binf = a.out + ".u64"
    with open(binf, "wb") as f:
        for h in hashes:
            f.write(h.to_bytes(8, "little"))
    res = subprocess.run([a.hindex, "pairs", binf, str(a.radius)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    os.unlink(binf)
    pairs = set()
    for line in res.splitlines():
        i, j, _ = line.split("\t")
        x, y = keys[int(i)], keys[int(j)]
        pairs.add((x, y) if x < y else (y, x))
    write_pairs(a.out, pairs)
    comp = components(pairs)
    print(json.dumps({
        "tool": "pe", "images": len(keys), "radius": a.radius, "pairs": len(pairs),
        "with_duplicate": len({x for p in pairs for x in p}),
        "groups": len(comp), "in_groups": sum(comp), "largest_group": comp[0] if comp else 0,
    }))


def cmd_compare(a):
    pe, peer = read_pairs(a.pe), read_pairs(a.peer)
    pe_img = {x for p in pe for x in p}
    peer_img = {x for p in peer for x in p}
    out = {
        "pairs_both": len(pe & peer), "pairs_pe_only": len(pe - peer),
        "pairs_peer_only": len(peer - pe),
        "images_both": len(pe_img & peer_img), "images_pe_only": len(pe_img - peer_img),
        "images_peer_only": len(peer_img - pe_img),
    }
    if a.cleanvision:
        cv = set()
        with open(a.cleanvision) as f:
            for line in f:
                k, t = line.rstrip("\n").split("\t")[:2]
                if "near_duplicates" in t.split(","):
                    cv.add(k)
        out.update({"cleanvision_near_dup_images": len(cv),
                    "cleanvision_and_pe_images": len(cv & pe_img),
                    "cleanvision_not_pe_images": len(cv - pe_img)})
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("imagededup")
    s.add_argument("dir")
    s.add_argument("--radius", type=int, default=8)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_imagededup)
    s = sub.add_parser("cleanvision")
    s.add_argument("dir")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_cleanvision)
    s = sub.add_parser("pe-pairs")
    s.add_argument("audit")
    s.add_argument("hindex")
    s.add_argument("radius", type=int)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_pe_pairs)
    s = sub.add_parser("compare")
    s.add_argument("pe")
    s.add_argument("peer")
    s.add_argument("--cleanvision")
    s.set_defaults(fn=cmd_compare)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())

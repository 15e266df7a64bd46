#!/usr/bin/env python3
"""Host half of the data oracle (see test/vm/oracle.test.ts, test/vm/vfio.test.ts): checks each image
file the guest wrote (through vhost-vdpa, through VFIO) against its manifest, byte for byte, without the
library. Every extent must equal the saved data and its sha256; every byte outside the extents must
still be zero.

    oracle-check.py RES [MANIFEST...]

MANIFEST names files in RES (default: oracle.json plus every oracle-*.json there); each one named
must exist. Exits non-zero if any image fails."""
import glob, hashlib, json, os, sys

def check(res, name):
    mf = os.path.join(res, name)
    if not os.path.exists(mf):
        print(f"oracle-check: FAIL: no manifest {mf} (the guest-side oracle test did not finish)")
        return 1
    m = json.load(open(mf))
    img = os.path.join(res, os.path.basename(m["image"]))
    data_path = os.path.join(res, os.path.basename(m["dataFile"]))
    data = open(data_path, "rb").read()
    if hashlib.sha256(data).hexdigest() != m["dataSha256"]:
        print(f"oracle-check: FAIL: {data_path} does not match its sha256"); return 1
    size = os.path.getsize(img)
    if size != m["imageSize"]:
        print(f"oracle-check: FAIL: image is {size} bytes, manifest says {m['imageSize']}"); return 1
    bad = 0
    ext = sorted(m["extents"], key=lambda e: e["offset"])
    with open(img, "rb") as f:
        for e in ext:
            f.seek(e["offset"]); got = f.read(e["length"])
            want = data[e["dataOffset"]:e["dataOffset"] + e["length"]]
            if hashlib.sha256(got).hexdigest() != e["sha256"] or got != want:
                at = next((i for i in range(len(want)) if i >= len(got) or got[i] != want[i]), -1)
                print(f"oracle-check: FAIL: extent @{e['offset']} +{e['length']} ({e['kind']}) differs at byte {at}")
                bad += 1
        # everything else must be zero
        pos, CH = 0, 1 << 20
        gaps = []
        for e in ext:
            if e["offset"] > pos: gaps.append((pos, e["offset"]))
            pos = max(pos, e["offset"] + e["length"])
        if pos < size: gaps.append((pos, size))
        for a, b in gaps:
            f.seek(a)
            while a < b:
                n = min(CH, b - a); blk = f.read(n)
                if blk.count(0) != n:
                    i = next(i for i, v in enumerate(blk) if v != 0)
                    print(f"oracle-check: FAIL: stray non-zero byte at {a + i} (outside every extent)"); bad += 1; break
                a += n
    total = sum(e["length"] for e in ext)
    if bad:
        print(f"oracle-check: FAIL: {bad} problem(s) in {img}"); return 1
    print(f"oracle-check: ok: {os.path.basename(img)}: {len(ext)} extents, {total} bytes match byte for byte, rest of {size}-byte image is zero (seed {m['seed']})")
    return 0

def main(argv):
    res = argv[1]
    names = argv[2:] or ["oracle.json"] + sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(res, "oracle-*.json")))
    rc = 0
    for name in names:
        rc |= check(res, name)
    return rc

if __name__ == "__main__":
    sys.exit(main(sys.argv))

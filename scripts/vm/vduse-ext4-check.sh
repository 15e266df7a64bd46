#!/usr/bin/env bash
# Host side of test/vm/vduse.test.ts, after the guest exited: the ext4 image a VDUSE blk device served
# by the library carried is checked without the library. e2fsck -fn must find it clean, and debugfs must
# read back the files the guest wrote: RES/vduse-ext4.expected.json names them with their content
# ("files") or the SHA-256 of their content ("sha256").
#
#   scripts/vm/vduse-ext4-check.sh RESULTS_DIR
set -uo pipefail
RES=${1:?usage: vduse-ext4-check.sh RESULTS_DIR}
IMG=$RES/vduse-ext4.img EXP=$RES/vduse-ext4.expected.json
[[ -f $EXP ]] || { echo "vduse-ext4-check: no $EXP (the guest's VDUSE ext4 test did not finish)" >&2; exit 1; }
command -v e2fsck debugfs >/dev/null || { echo "vduse-ext4-check: e2fsprogs missing (scripts/vm/setup.sh installs it)" >&2; exit 1; }
e2fsck -fn "$IMG" || { echo "vduse-ext4-check: e2fsck -fn $IMG found problems" >&2; exit 1; }
python3 - "$EXP" "$IMG" <<'PY'
import hashlib, json, subprocess, sys
exp, img = json.load(open(sys.argv[1])), sys.argv[2]
def cat(p):
    r = subprocess.run(["debugfs", "-R", f"cat {p}", img], capture_output=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"vduse-ext4-check: debugfs cat {p} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout
bad = 0
for p, text in exp.get("files", {}).items():
    ok = cat(p) == text.encode()
    bad += not ok
    print(f"{'ok  ' if ok else 'BAD '} {p}: content")
for p, sha in exp.get("sha256", {}).items():
    got = hashlib.sha256(cat(p)).hexdigest()
    bad += got != sha
    print(f"{'ok  ' if got == sha else 'BAD '} {p}: sha256 {got}" + ("" if got == sha else f" (expected {sha})"))
if not exp.get("files") and not exp.get("sha256"):
    sys.exit("vduse-ext4-check: the manifest names no files")
sys.exit(1 if bad else 0)
PY

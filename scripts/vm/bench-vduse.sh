#!/usr/bin/env bash
# Inside the vdpa-vm guest: Node VDUSE blk devices (test/vm/vduse-serve.ts) against qemu-storage-daemon's
# vduse-blk export, all through virtio_vdpa and the kernel's virtio_blk, driven by fio (io_uring,
# O_DIRECT, 4 KiB random read and write, depth 1 and 32):
#   node-file  createVduseBlk({ file }): preadv/pwritev on the library's I/O threads
#   node-js    createVduseBlk({ capacity, handler }): a RAM disk whose read and write are JS functions
#              (handler=js-sync in vduse-serve.ts), in its own process
#   qsd        qemu-storage-daemon --blockdev driver=file (its defaults: page cache, aio=threads)
# The file disks are identical 256 MiB sparse files in each directory of VDPA_BENCH_DIRS (default: the
# results dir, a 9p share with cache=none, so every file access is a round trip to the host; /tmp is
# the guest's tmpfs). Both file backends use the page cache (no O_DIRECT on the image), 1 queue of 256.
# The three devices are up at once; each cell (rw, depth) runs on the three back to back, VDPA_BENCH_ROUNDS
# times (default 3). Prints one line per run, then a table row per cell: medians, the ratio of the medians
# and (in parentheses) the median of the per-round ratios.
# Numbers under TCG are only comparable with each other, within one run.
#
#   scripts/vm/run.sh --results DIR -- bash scripts/vm/bench-vduse.sh
#   (VDPA_BENCH_SECONDS per run, default 15; VDPA_BENCH_DIRS, e.g. "/tmp $DIR")
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RES=${VDPA_VM_RESULTS:?run me in the guest through scripts/vm/run.sh}
SECS=${VDPA_BENCH_SECONDS:-15}
ROUNDS=${VDPA_BENCH_ROUNDS:-3}
DIRS=${VDPA_BENCH_DIRS:-$RES}
SIZE=$((256 << 20))
cd "$ROOT" || exit 2

# fio_iops DEV RW DEPTH : IOPS of one run
fio_iops() {
  fio --name=b --filename="$1" --direct=1 --ioengine=io_uring --rw="$2" --bs=4k --iodepth="$3" \
    --time_based --runtime="$SECS" --ramp_time=2 --size=256M --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j["read"]["iops"]+j["write"]["iops"]))'
}

# serve_node NAME ARGS... : starts a Node device from vduse-serve.js; sets $dev, appends its pid to $pids
pids=()
serve_node() {
  local out=/tmp/bench-$1.out i
  dev=""
  node dist/test/vm/vduse-serve.js "$@" >"$out" 2>"/tmp/bench-$1.err" &
  pids+=($!)
  for ((i = 0; i < 600; i++)); do dev=$(head -n1 "$out" 2>/dev/null); [[ -n $dev ]] && break; sleep 0.1; done
  [[ $dev == /dev/vd* ]] || { cat "/tmp/bench-$1.err"; exit 1; }
}

echo "bench-vduse: $SECS s per run, $ROUNDS round(s), dirs: $DIRS; $(nproc) vCPUs, $(uname -r)"
declare -A iops
for dir in $DIRS; do
  fs=$(findmnt -n -o FSTYPE --target "$dir")
  for n in node qsd; do rm -f "$dir/bench-$n.img"; truncate -s "$SIZE" "$dir/bench-$n.img"; done
  # All three at once, so that each cell's three runs follow each other (the host's load drifts).
  serve_node benchnode virtio_vdpa file="$dir/bench-node.img"; fdev=$dev
  serve_node benchjs virtio_vdpa capacity=$SIZE handler=js-sync; jdev=$dev
  qdev=$("$HERE/vduse-blk.sh" start --virtio benchqsd "$dir/bench-qsd.img") || exit 1
  for ((r = 1; r <= ROUNDS; r++)); do
    for rw in randread randwrite; do
      for d in 1 32; do
        for b in node-file:$fdev node-js:$jdev qsd:$qdev; do
          v=$(fio_iops "${b#*:}" "$rw" "$d")
          iops[$fs.${b%%:*}.$rw.$d]="${iops[$fs.${b%%:*}.$rw.$d]:-} $v"
          echo "$fs round $r ${b%%:*} $rw depth $d: $v IOPS"
        done
      done
    done
  done
  kill -TERM "${pids[@]}"
  wait "${pids[@]}" || { echo "a vduse-serve process failed to close: $(cat /tmp/bench-bench*.err)"; exit 1; }
  pids=()
  cat /tmp/bench-benchnode.err /tmp/bench-benchjs.err
  "$HERE/vduse-blk.sh" stop benchqsd
  rm -f "$dir/bench-node.img" "$dir/bench-qsd.img"
done

# Medians of each cell's runs, the ratios of the medians, and the median of the per-round ratios.
for dir in $DIRS; do
  fs=$(findmnt -n -o FSTYPE --target "$dir")
  for rw in randread randwrite; do
    for d in 1 32; do
      python3 -c '
import statistics as st, sys
fs, rw, d = sys.argv[1:4]
f, j, q = ([int(x) for x in v.split()] for v in sys.argv[4:7])
m = lambda v: st.median(v)
pf = m([a / b for a, b in zip(f, q)]); pj = m([a / b for a, b in zip(j, q)])
print(f"| {fs} | {rw} | {d} | {m(f):.0f} | {m(j):.0f} | {m(q):.0f} | {m(f)/m(q):.2f}x ({pf:.2f}x) | {m(j)/m(q):.2f}x ({pj:.2f}x) |")
' "$fs" "$rw" "$d" "${iops[$fs.node-file.$rw.$d]}" "${iops[$fs.node-js.$rw.$d]}" "${iops[$fs.qsd.$rw.$d]}"
    done
  done
done

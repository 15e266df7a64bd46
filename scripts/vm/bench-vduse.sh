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
# Rounds alternate the three (VDPA_BENCH_ROUNDS, default 1); prints one line per run and the ratios.
# Numbers under TCG are only comparable with each other, within one run.
#
#   scripts/vm/run.sh --results DIR -- bash scripts/vm/bench-vduse.sh
#   (VDPA_BENCH_SECONDS per run, default 15; VDPA_BENCH_DIRS, e.g. "/tmp $DIR")
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RES=${VDPA_VM_RESULTS:?run me in the guest through scripts/vm/run.sh}
SECS=${VDPA_BENCH_SECONDS:-15}
ROUNDS=${VDPA_BENCH_ROUNDS:-1}
DIRS=${VDPA_BENCH_DIRS:-$RES}
SIZE=$((256 << 20))
cd "$ROOT" || exit 2

# fio_iops DEV RW DEPTH : IOPS of one run
fio_iops() {
  fio --name=b --filename="$1" --direct=1 --ioengine=io_uring --rw="$2" --bs=4k --iodepth="$3" \
    --time_based --runtime="$SECS" --ramp_time=2 --size=256M --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j["read"]["iops"]+j["write"]["iops"]))'
}

declare -A iops
bench() {  # bench KEY DEV
  local rw d v
  for rw in randread randwrite; do
    for d in 1 32; do
      v=$(fio_iops "$2" "$rw" "$d")
      iops[$1.$rw.$d]="${iops[$1.$rw.$d]:-} $v"
      echo "$1 $rw depth $d: $v IOPS"
    done
  done
}

# serve_node KEY ARGS... : a Node device from vduse-serve.js, benchmarked, then stopped (SIGTERM)
serve_node() {
  local key=$1 dev="" pid i
  shift
  node dist/test/vm/vduse-serve.js "$@" >/tmp/bench-serve.out 2>/tmp/bench-serve.err &
  pid=$!
  for ((i = 0; i < 600; i++)); do dev=$(head -n1 /tmp/bench-serve.out 2>/dev/null); [[ -n $dev ]] && break; sleep 0.1; done
  [[ $dev == /dev/vd* ]] || { cat /tmp/bench-serve.err; exit 1; }
  bench "$key" "$dev"
  kill -TERM "$pid"; wait "$pid" || { echo "vduse-serve $* failed to close: $(cat /tmp/bench-serve.err)"; exit 1; }
  tail -n 2 /tmp/bench-serve.err
}

echo "bench-vduse: $SECS s per run, $ROUNDS round(s), dirs: $DIRS; $(nproc) vCPUs, $(uname -r)"
for dir in $DIRS; do
  for n in node qsd; do rm -f "$dir/bench-$n.img"; truncate -s "$SIZE" "$dir/bench-$n.img"; done
  fs=$(stat -f -c %T "$dir")
  for ((r = 1; r <= ROUNDS; r++)); do
    serve_node "$fs.node-file" benchnode virtio_vdpa file="$dir/bench-node.img"
    serve_node "$fs.node-js" benchjs virtio_vdpa capacity=$SIZE handler=js-sync
    dev=$("$HERE/vduse-blk.sh" start --virtio benchqsd "$dir/bench-qsd.img") || exit 1
    bench "$fs.qsd" "$dev"
    "$HERE/vduse-blk.sh" stop benchqsd
  done
  rm -f "$dir/bench-node.img" "$dir/bench-qsd.img"
done

# The median of each cell's runs, and the ratios against qemu-storage-daemon.
for dir in $DIRS; do
  fs=$(stat -f -c %T "$dir" 2>/dev/null || echo "$dir")
  for rw in randread randwrite; do
    for d in 1 32; do
      python3 -c '
import statistics, sys
fs, rw, d = sys.argv[1:4]
f, j, q = (statistics.median(int(x) for x in v.split()) for v in sys.argv[4:7])
print(f"{fs} {rw} depth {d}: node-file {f:.0f} node-js {j:.0f} qsd {q:.0f} IOPS; file/qsd {f/q:.2f}x js/qsd {j/q:.2f}x")
' "$fs" "$rw" "$d" "${iops[$fs.node-file.$rw.$d]}" "${iops[$fs.node-js.$rw.$d]}" "${iops[$fs.qsd.$rw.$d]}"
    done
  done
done

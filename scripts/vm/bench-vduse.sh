#!/usr/bin/env bash
# Inside the vdpa-vm guest: a Node VDUSE blk (file backend, test/vm/vduse-serve.ts) against
# qemu-storage-daemon's vduse-blk export of an identical file, both through virtio_vdpa and the
# kernel's virtio_blk, driven by fio (io_uring, O_DIRECT, 4 KiB random read and write, depth 1 and 32).
# Prints one line per run and the Node/qemu-storage-daemon IOPS ratios. Numbers under TCG are only
# comparable with each other, within one run.
#
#   scripts/vm/run.sh --results DIR -- bash scripts/vm/bench-vduse.sh   (VDPA_BENCH_SECONDS, default 15)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RES=${VDPA_VM_RESULTS:?run me in the guest through scripts/vm/run.sh}
SECS=${VDPA_BENCH_SECONDS:-15}
cd "$ROOT" || exit 2
for n in node qsd; do rm -f "$RES/bench-$n.img"; truncate -s 256M "$RES/bench-$n.img"; done

# fio_iops DEV RW DEPTH : IOPS of one run
fio_iops() {
  fio --name=b --filename="$1" --direct=1 --ioengine=io_uring --rw="$2" --bs=4k --iodepth="$3" \
    --time_based --runtime="$SECS" --ramp_time=2 --size=256M --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j["read"]["iops"]+j["write"]["iops"]))'
}

declare -A iops
bench() {  # bench LABEL DEV
  local rw d
  for rw in randread randwrite; do
    for d in 1 32; do
      iops[$1.$rw.$d]=$(fio_iops "$2" "$rw" "$d")
      echo "$1 $rw depth $d: ${iops[$1.$rw.$d]} IOPS"
    done
  done
}

node dist/test/vm/vduse-serve.js benchnode virtio_vdpa file="$RES/bench-node.img" >/tmp/bench-node.out 2>/tmp/bench-node.err &
pid=$!
for ((i = 0; i < 600; i++)); do dev=$(head -n1 /tmp/bench-node.out 2>/dev/null); [[ -n $dev ]] && break; sleep 0.1; done
[[ $dev == /dev/vd* ]] || { cat /tmp/bench-node.err; exit 1; }
bench node "$dev"
kill -TERM "$pid"; wait "$pid"

dev=$("$HERE/vduse-blk.sh" start --virtio benchqsd "$RES/bench-qsd.img") || exit 1
bench qsd "$dev"
"$HERE/vduse-blk.sh" stop benchqsd

for rw in randread randwrite; do
  for d in 1 32; do
    python3 -c "import sys; n,q=int(sys.argv[1]),int(sys.argv[2]); print(f'ratio node/qsd $rw depth $d: {n/q:.2f} ({n} vs {q} IOPS)')" \
      "${iops[node.$rw.$d]}" "${iops[qsd.$rw.$d]}"
  done
done

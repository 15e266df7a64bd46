#!/usr/bin/env bash
# Inside the vdpa-vm guest (started by scripts/vm/bench-vm.sh through run.sh): 4 KiB random read/write
# at queue depth 1 and 32, the library (dist/bench/vm-blk.js over /dev/vhost-vdpa-N) against the
# kernel's own virtio-blk driver (fio, io_uring, O_DIRECT on /dev/vdX), on two identical VDUSE
# virtio-blk devices (qemu-storage-daemon, 1 queue x 256, 256 MiB image each). Measurements are
# interleaved (node, fio, node, fio, ...); the table shows medians, their node/kernel ratio, and the
# median of the per-repetition ratios (each node run against the fio run right after it: robust to
# load that drifts over the run, e.g. other guests on the host).
#
# Environment:
#   VDPA_BENCH_SECONDS   timed seconds per measurement (default 8; both sides get 1 s of warm-up on top)
#   VDPA_BENCH_REPS      repetitions per cell (default 3; the median is reported)
#   VDPA_BENCH_IMG_DIR   where the two images go (default /tmp, guest tmpfs: a cheap backend, so the
#                        drivers are what is compared. $VDPA_VM_RESULTS is a 9p share mounted
#                        cache=none: there every 4 KiB backend I/O is a synchronous 9p round trip to
#                        the host, which then dominates and adds noise)
#   VDPA_BENCH_DEPTHS    queue depths (default "1 32")
#   VDPA_BENCH_SCHED     I/O scheduler for the kernel's /dev/vdX (default none, like the library)
#
# Output: progress lines, then the markdown table (also in $VDPA_VM_RESULTS/bench-table.md); every
# sample in $VDPA_VM_RESULTS/bench-samples.tsv, fio's JSON in $VDPA_VM_RESULTS/fio/.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
die() { echo "bench-guest: ERROR: $*" >&2; exit 2; }
[[ ${VDPA_IN_VM:-} == 1 ]] || die "run me inside the VM (scripts/vm/bench-vm.sh)"
RES=${VDPA_VM_RESULTS:?}
cd "$ROOT" || die "no $ROOT"
[[ -f dist/bench/vm-blk.js ]] || die "dist/bench/vm-blk.js missing (npx tsc -p tsconfig.json)"
command -v fio >/dev/null || die "fio not installed"

SECS=${VDPA_BENCH_SECONDS:-8}
REPS=${VDPA_BENCH_REPS:-3}
DEPTHS=${VDPA_BENCH_DEPTHS:-1 32}
IMGDIR=${VDPA_BENCH_IMG_DIR:-/tmp}
SAMPLES=$RES/bench-samples.tsv
TABLE=$RES/bench-table.md
mkdir -p "$RES/fio" "$IMGDIR"
rm -f "$TABLE"
printf 'rw\tdepth\trep\tdriver\tiops\tbusy%%\tusr%%\tsys%%\n' >"$SAMPLES"
t_begin=$SECONDS

NAME_A=bench-vhost NAME_B=bench-kernel
IMG_A=$IMGDIR/bench-vhost.img IMG_B=$IMGDIR/bench-kernel.img
cleanup() {
  local n
  for n in $NAME_A $NAME_B; do timeout -k 5 60 "$HERE/vduse-blk.sh" stop "$n" 2>/dev/null || true; done
  # the images are only scratch space; keep the results dir small
  rm -f "$IMG_A" "$IMG_B"
}
trap cleanup EXIT

# Fully written (not sparse) images, so both devices start from the same, allocated state.
for img in "$IMG_A" "$IMG_B"; do
  dd if=/dev/zero of="$img" bs=1M count=256 conv=fsync status=none || die "creating $img failed"
done
echo "bench-guest: images ready in $IMGDIR ($((SECONDS - t_begin)) s)"

DEV_A=$("$HERE/vduse-blk.sh" start -q 1 -s 256 "$NAME_A" "$IMG_A") || die "starting $NAME_A failed"
DEV_B=$("$HERE/vduse-blk.sh" start -q 1 -s 256 --virtio "$NAME_B" "$IMG_B") || die "starting $NAME_B failed"
# The library has no I/O scheduler; give the kernel driver none either (mq-deadline is the default
# for a single-queue disk). VDPA_BENCH_SCHED=mq-deadline keeps the default.
echo "${VDPA_BENCH_SCHED:-none}" >"/sys/block/${DEV_B#/dev/}/queue/scheduler" 2>/dev/null \
  || echo "bench-guest: WARNING: could not set the I/O scheduler of $DEV_B" >&2
sched=$(cat "/sys/block/${DEV_B#/dev/}/queue/scheduler" 2>/dev/null || echo '?')
echo "bench-guest: library on $DEV_A, kernel virtio-blk on $DEV_B (scheduler: $sched)"
echo "bench-guest: $(uname -r), $(nproc) vCPUs, $(node --version), $(fio --version), ${SECS}s x $REPS reps per cell"

# CPU accounting from /proc/stat around a measurement: whole-guest busy%, user%, system% (incl. irq).
cpu_snap() { awk '/^cpu /{print $2+$3, $4+$7+$8, $5+$6; exit}' /proc/stat; }
cpu_delta() {  # before after -> "busy usr sys" in % of all vCPUs
  awk -v a="$1" -v b="$2" 'BEGIN{split(a,x," "); split(b,y," ");
    u=y[1]-x[1]; s=y[2]-x[2]; i=y[3]-x[3]; t=u+s+i; if (t<=0) t=1;
    printf "%.0f %.0f %.0f", 100*(u+s)/t, 100*u/t, 100*s/t}'
}

failed=0
run_node() {  # rw depth -> iops on stdout
  local mode=${1#rand} out
  out=$(timeout -k 5 $((SECS + 90)) node dist/bench/vm-blk.js "$DEV_A" "$SECS" "$2" "$mode") || return 1
  node -e 'const r=JSON.parse(process.argv[1]); if(!(r.iops>0)) process.exit(1); console.log(r.iops)' "$out"
}
run_fio() {  # rw depth rep -> iops on stdout
  local rw=$1 d=$2 json=$RES/fio/$1-qd$2-$3.json
  timeout -k 5 $((SECS + 90)) fio --name=kernel --filename="$DEV_B" --ioengine=io_uring --direct=1 \
    --bs=4k --iodepth="$d" --rw="$rw" --time_based --runtime="$SECS" --ramp_time=1 --numjobs=1 \
    --norandommap --randrepeat=0 --output-format=json --output="$json" >/dev/null || return 1
  node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).jobs[0];
    const s=process.argv[2]==="randread"?j.read:j.write; if(j.error||!(s.iops>0)) process.exit(1);
    console.log(Math.round(s.iops))' "$json" "$rw"
}
measure() {  # driver rw depth rep
  local drv=$1 rw=$2 d=$3 rep=$4 c0 c1 iops cpu
  c0=$(cpu_snap)
  if [[ $drv == node ]]; then iops=$(run_node "$rw" "$d"); else iops=$(run_fio "$rw" "$d" "$rep"); fi
  local rc=$?
  c1=$(cpu_snap)
  if ((rc != 0)) || [[ -z $iops ]]; then
    echo "bench-guest: FAIL $drv $rw qd$d rep $rep (exit $rc)" >&2; failed=1; iops=NaN
  fi
  cpu=$(cpu_delta "$c0" "$c1")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rw" "$d" "$rep" "$drv" "$iops" "${cpu// /$'\t'}" >>"$SAMPLES"
  printf 'bench-guest: %-9s qd%-3s rep %s %-6s %8s IOPS  (guest CPU busy/usr/sys %%: %s)\n' \
    "$rw" "$d" "$rep" "$drv" "$iops" "${cpu// //}"
}

for rw in randread randwrite; do
  for d in $DEPTHS; do
    for ((rep = 1; rep <= REPS; rep++)); do
      measure node "$rw" "$d" "$rep"
      measure kernel "$rw" "$d" "$rep"
    done
  done
done

# Medians per (rw, depth, driver) and the table.
awk -F'\t' -v node_col='node IOPS (vhost-vdpa)' -v kernel_col='kernel IOPS (virtio_vdpa + fio)' -f "$HERE/bench-table.awk" "$SAMPLES" >"$TABLE"

stop_rc=0
trap - EXIT
for n in $NAME_A $NAME_B; do timeout -k 5 60 "$HERE/vduse-blk.sh" stop "$n" || stop_rc=1; done
rm -f "$IMG_A" "$IMG_B"
((stop_rc == 0)) || { echo "bench-guest: FAIL stopping the devices" >&2; failed=1; }

echo
echo "4 KiB random I/O, 1 queue x 256, 256 MiB image per device; median of $REPS interleaved runs of ${SECS}s (+1s warm-up) each"
cat "$TABLE"
echo "bench-guest: done in $((SECONDS - t_begin)) s"
exit $failed

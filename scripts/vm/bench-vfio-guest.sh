#!/usr/bin/env bash
# Inside the vdpa-vm guest (started by scripts/vm/bench-vfio.sh through run.sh, which boots it with two
# identical virtio-blk-pci functions and a --net-pair):
#
# 1. blk: 4 KiB random read/write at queue depth 1 and 32, the library's VFIO driver
#    (dist/bench/vm-blk.js on vfio:<blk #1>) against the kernel's virtio_blk driver on blk #2 (fio,
#    io_uring, O_DIRECT on /dev/vdX, scheduler none). Interleaved (node, fio, node, fio, ...); the table
#    shows medians, their node/kernel ratio and the median of the per-repetition ratios.
# 2. net: packets per second between the two virtio-net-pci functions, both bound to vfio-pci
#    (dist/bench/vm-net.js), 64 B and 1500 B frames, both directions.
# 3. forwarding: DPDK's testpmd (io forward, paired ports, tx-first) against the library's forwarder
#    in the same mode (dist/bench/vm-net-forward.js) on the same two functions, interleaved (testpmd,
#    node, testpmd, ...); the table shows received frames/s per port and the node/testpmd ratios, for
#    the forwarder written in JS (also polled, with VDPA_BENCH_POLL_MICROS) and the native one
#    (NetDevice.forward).
#
# Environment:
#   VDPA_BENCH_SECONDS      timed seconds per blk measurement (default 5; +1 s warm-up each side)
#   VDPA_BENCH_REPS         repetitions per blk cell (default 3; median reported)
#   VDPA_BENCH_DEPTHS       queue depths (default "1 32")
#   VDPA_BENCH_POLL_MICROS  also run node with BlkOptions.pollMicros = this (default 0: not run), in
#                           the same rounds, as the column "node polled"
#   VDPA_BENCH_NET_SECONDS  timed seconds per net size/direction (default 5; +1 s warm-up)
#   VDPA_BENCH_NET_REPS     vm-net.js runs (default 1; median reported)
#   VDPA_BENCH_NET_SIZES    frame sizes (default 64,1500)
#   VDPA_BENCH_FWD_SECONDS  timed seconds per forwarding run (default 5; +1 s warm-up)
#   VDPA_BENCH_FWD_REPS     forwarding runs per size and forwarder (default 3; median reported; 0: none)
#
# Output: progress lines, then the tables (also $VDPA_VM_RESULTS/bench-vfio-table.md); samples in
# $VDPA_VM_RESULTS/bench-vfio-samples.tsv, vm-net JSON lines in net.jsonl, fio JSON in fio-vfio/.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
die() { echo "bench-vfio-guest: ERROR: $*" >&2; exit 2; }
[[ ${VDPA_IN_VM:-} == 1 ]] || die "run me inside the VM (scripts/vm/bench-vfio.sh)"
RES=${VDPA_VM_RESULTS:?}
cd "$ROOT" || die "no $ROOT"
[[ -f dist/bench/vm-blk.js && -f dist/bench/vm-net.js ]] || die "dist/bench/vm-{blk,net}.js missing (npx tsc -p tsconfig.json)"
command -v fio >/dev/null || die "fio not installed"

SECS=${VDPA_BENCH_SECONDS:-5}
REPS=${VDPA_BENCH_REPS:-3}
DEPTHS=${VDPA_BENCH_DEPTHS:-1 32}
POLL=${VDPA_BENCH_POLL_MICROS:-0}
NET_SECS=${VDPA_BENCH_NET_SECONDS:-5}
NET_REPS=${VDPA_BENCH_NET_REPS:-1}
NET_SIZES=${VDPA_BENCH_NET_SIZES:-64,1500}
FWD_SECS=${VDPA_BENCH_FWD_SECONDS:-5}
FWD_REPS=${VDPA_BENCH_FWD_REPS:-3}
FWDJ=$RES/forward.jsonl
((FWD_REPS == 0)) || command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not installed (Debian: dpdk-dev)"
SAMPLES=$RES/bench-vfio-samples.tsv
TABLE=$RES/bench-vfio-table.md
NETJ=$RES/net.jsonl
mkdir -p "$RES/fio-vfio"
rm -f "$TABLE" "$NETJ" "$FWDJ"
printf 'rw\tdepth\trep\tdriver\tiops\tbusy%%\tusr%%\tsys%%\n' >"$SAMPLES"
t_begin=$SECONDS
failed=0

# ---- find and bind the functions
fn_with() {  # VENDOR DEVICE -> PCI addresses, in address order
  local d
  for d in /sys/bus/pci/devices/*; do
    [[ $(cat "$d/vendor" 2>/dev/null) == "$1" && $(cat "$d/device" 2>/dev/null) == "$2" ]] && echo "${d##*/}"
  done
}
drv_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null)" 2>/dev/null; }
bind_vfio() {  # BDF : driver_override, unbind, drivers_probe
  local b=$1 d=/sys/bus/pci/devices/$1
  [[ $(drv_of "$b") == vfio-pci ]] && return 0
  echo vfio-pci >"$d/driver_override" || return 1
  if [[ -e $d/driver ]]; then timeout 30 sh -c "echo $b > $d/driver/unbind" || return 1; fi
  echo "$b" >/sys/bus/pci/drivers_probe || return 1
  [[ $(drv_of "$b") == vfio-pci ]]
}
modprobe vfio-pci 2>/dev/null || true
[[ -d /sys/bus/pci/drivers/vfio-pci ]] || die "no vfio-pci driver in the guest"
# (no process substitution: the guest has no /dev/fd)
blks=($(fn_with 0x1af4 0x1042))
nets=($(fn_with 0x1af4 0x1041))
((${#blks[@]} == 2 && ${#nets[@]} == 2)) \
  || die "expected two virtio-blk-pci (0x1042) and two virtio-net-pci (0x1041) functions; blk: ${blks[*]:-none}; net: ${nets[*]:-none}"
BLK_VFIO=${blks[0]} BLK_KERN=${blks[1]}
# blk #2 stays on virtio_blk: its disk
DEV_K=""
for i in $(seq 300); do   # up to 30 s: TCG is slow
  DEV_K=$(ls -d /sys/bus/pci/devices/"$BLK_KERN"/virtio*/block/vd* 2>/dev/null | head -n1)
  [[ -n $DEV_K ]] && break
  sleep 0.1
done
[[ -n $DEV_K ]] || die "$BLK_KERN ($(drv_of "$BLK_KERN")) has no /dev/vdX after 30 s"
DEV_K=/dev/${DEV_K##*/}
for b in "$BLK_VFIO" "${nets[@]}"; do bind_vfio "$b" || die "could not bind $b to vfio-pci (driver now: $(drv_of "$b"))"; done
echo none >"/sys/block/${DEV_K#/dev/}/queue/scheduler" 2>/dev/null \
  || echo "bench-vfio-guest: WARNING: could not set the I/O scheduler of $DEV_K" >&2
sched=$(grep -o '\[[^]]*\]' "/sys/block/${DEV_K#/dev/}/queue/scheduler" 2>/dev/null | tr -d '[]')
nq=$(ls "/sys/block/${DEV_K#/dev/}/mq" 2>/dev/null | wc -l)
echo "bench-vfio-guest: library (VFIO) on vfio:$BLK_VFIO; kernel virtio_blk on $BLK_KERN = $DEV_K (scheduler: $sched, $nq hw queues); NICs vfio:${nets[0]} vfio:${nets[1]}"
echo "bench-vfio-guest: $(uname -r), $(nproc) vCPUs, $(node --version), $(fio --version), blk ${SECS}s x $REPS reps, net ${NET_SECS}s x $NET_REPS; guest loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

# CPU accounting from /proc/stat around a measurement: whole-guest busy%, user%, system% (incl. irq).
cpu_snap() { awk '/^cpu /{print $2+$3, $4+$7+$8, $5+$6; exit}' /proc/stat; }
cpu_delta() {
  awk -v a="$1" -v b="$2" 'BEGIN{split(a,x," "); split(b,y," ");
    u=y[1]-x[1]; s=y[2]-x[2]; i=y[3]-x[3]; t=u+s+i; if (t<=0) t=1;
    printf "%.0f %.0f %.0f", 100*(u+s)/t, 100*u/t, 100*s/t}'
}

run_node() {  # rw depth poll-us -> iops
  local mode=${1#rand} out
  out=$(VDPA_BENCH_POLL_MICROS=$3 timeout -k 5 $((SECS + 90)) node dist/bench/vm-blk.js "vfio:$BLK_VFIO" "$SECS" "$2" "$mode") || return 1
  node -e 'const r=JSON.parse(process.argv[1]); if(!(r.iops>0)) process.exit(1); console.log(r.iops)' "$out"
}
run_fio() {  # rw depth rep -> iops
  local rw=$1 d=$2 json=$RES/fio-vfio/$1-qd$2-$3.json
  timeout -k 5 $((SECS + 90)) fio --name=kernel --filename="$DEV_K" --ioengine=io_uring --direct=1 \
    --bs=4k --iodepth="$d" --rw="$rw" --time_based --runtime="$SECS" --ramp_time=1 --numjobs=1 \
    --norandommap --randrepeat=0 --output-format=json --output="$json" >/dev/null || return 1
  node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).jobs[0];
    const s=process.argv[2]==="randread"?j.read:j.write; if(j.error||!(s.iops>0)) process.exit(1);
    console.log(Math.round(s.iops))' "$json" "$rw"
}
measure() {  # driver rw depth rep
  local drv=$1 rw=$2 d=$3 rep=$4 c0 c1 iops cpu rc
  c0=$(cpu_snap)
  case $drv in
    node) iops=$(run_node "$rw" "$d" 0) ;;
    polled) iops=$(run_node "$rw" "$d" "$POLL") ;;
    *) iops=$(run_fio "$rw" "$d" "$rep") ;;
  esac
  rc=$?
  c1=$(cpu_snap)
  if ((rc != 0)) || [[ -z $iops ]]; then
    echo "bench-vfio-guest: FAIL $drv $rw qd$d rep $rep (exit $rc)" >&2; failed=1; iops=NaN
  fi
  cpu=$(cpu_delta "$c0" "$c1")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rw" "$d" "$rep" "$drv" "$iops" "${cpu// /$'\t'}" >>"$SAMPLES"
  printf 'bench-vfio-guest: %-9s qd%-3s rep %s %-6s %8s IOPS  (guest CPU busy/usr/sys %%: %s)\n' \
    "$rw" "$d" "$rep" "$drv" "$iops" "${cpu// //}"
}

# ---- blk
for rw in randread randwrite; do
  for d in $DEPTHS; do
    for ((rep = 1; rep <= REPS; rep++)); do
      measure node "$rw" "$d" "$rep"
      ((POLL > 0)) && measure polled "$rw" "$d" "$rep"
      measure kernel "$rw" "$d" "$rep"
    done
  done
done
echo "bench-vfio-guest: blk done ($((SECONDS - t_begin)) s)"

# ---- net
for ((rep = 1; rep <= NET_REPS; rep++)); do
  out=$(timeout -k 5 $((8 * (NET_SECS + 4) + 90)) node dist/bench/vm-net.js "vfio:${nets[0]}" "vfio:${nets[1]}" "$NET_SECS" "$NET_SIZES")
  rc=$?
  [[ -n $out ]] && printf '%s\n' "$out" | tee -a "$NETJ" | sed 's/^/bench-vfio-guest: net /'
  ((rc == 0)) || { echo "bench-vfio-guest: FAIL vm-net.js rep $rep (exit $rc)" >&2; failed=1; }
done
echo "bench-vfio-guest: net done ($((SECONDS - t_begin)) s); guest loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- forwarding: testpmd and node, in the same mode on the same two functions
# testpmd prints port statistics every second (--stats-period); it is stopped with SIGINT once it
# printed warm-up + FWD_SECS periods, and the Rx-pps of the periods after the warm-up are averaged.
run_testpmd() {  # size rep -> JSON line
  local size=$1 log=$RES/testpmd-$1-$2.log pid n want=$((2 * (FWD_SECS + 2))) i
  dpdk-testpmd -l 0-1 --no-huge -m 512 -a "${nets[0]}" -a "${nets[1]}" -- --forward-mode=io \
    --port-topology=paired --tx-first --no-mlockall --stats-period=1 --total-num-mbufs=8192 --txpkts="$size" >"$log" 2>&1 &
  pid=$!
  for ((i = 0; i < 10 * (FWD_SECS + 60); i++)); do
    n=$(grep -c 'Rx-pps:' "$log")
    ((n >= want)) && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -INT "$pid" 2>/dev/null
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  awk -v size="$size" -v skip=2 -v secs="$FWD_SECS" '
    /NIC statistics for port/ { port = $6 + 0 }
    /Rx-pps:/ { k = seen[port]++; if (k >= skip && k < skip + secs) { sum[port] += $2; cnt[port]++ } }
    END {
      if (!cnt[0] || !cnt[1] || cnt[0] < secs || cnt[1] < secs) exit 1
      a = sum[0] / cnt[0]; b = sum[1] / cnt[1]
      printf "{\"mode\":\"testpmd\",\"size\":%d,\"seconds\":%d,\"rxPpsA\":%d,\"rxPpsB\":%d,\"rxPps\":%d}\n", size, secs, a, b, (a + b) / 2
    }' "$log"
}
run_forward() {  # mode size rep
  local out rc
  case $1 in
    testpmd) out=$(run_testpmd "$2" "$3") ;;
    node) out=$(VDPA_BENCH_POLL_MICROS=0 timeout -k 5 $((FWD_SECS + 90)) node dist/bench/vm-net-forward.js "vfio:${nets[0]}" "vfio:${nets[1]}" "$FWD_SECS" "$2") ;;
    polled) out=$(VDPA_BENCH_POLL_MICROS=$POLL timeout -k 5 $((FWD_SECS + 90)) node dist/bench/vm-net-forward.js "vfio:${nets[0]}" "vfio:${nets[1]}" "$FWD_SECS" "$2") ;;
    native) out=$(VDPA_BENCH_POLL_MICROS=0 timeout -k 5 $((FWD_SECS + 90)) node dist/bench/vm-net-forward.js "vfio:${nets[0]}" "vfio:${nets[1]}" "$FWD_SECS" "$2" native) ;;
  esac
  rc=$?
  if ((rc != 0)) || [[ -z $out ]]; then
    echo "bench-vfio-guest: FAIL forward $1 ${2} B rep $3 (exit $rc)" >&2; failed=1; return
  fi
  printf '%s\n' "$out" | tee -a "$FWDJ" | sed 's/^/bench-vfio-guest: forward /'
}
for size in ${NET_SIZES//,/ }; do
  for ((rep = 1; rep <= FWD_REPS; rep++)); do
    run_forward testpmd "$size" "$rep"
    run_forward node "$size" "$rep"
    ((POLL > 0)) && run_forward polled "$size" "$rep"
    run_forward native "$size" "$rep"
  done
done
echo "bench-vfio-guest: forwarding done ($((SECONDS - t_begin)) s)"

# ---- tables
{
  echo "4 KiB random I/O, 256 MiB raw image per function, 1 job; median of $REPS interleaved runs of ${SECS}s (+1s warm-up) each"
  echo
  awk -F'\t' -v node_col='node IOPS (VFIO)' -v kernel_col='kernel IOPS (virtio_blk + fio)' \
    -v polled_col="node IOPS, pollMicros $POLL" -f "$HERE/bench-table.awk" "$SAMPLES"
  echo
  echo "Frames between the two virtio-net-pci functions (both VFIO, QEMU hub); sendBatch of queueSize/2, <= queueSize in flight; ${NET_SECS}s (+1s warm-up) per row, median of $NET_REPS run(s)"
  echo
  echo "| frame | direction | sent frames/s | received frames/s | lost % | rx Mbit/s | verified / bad / dup | reordered |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
  if [[ -s $NETJ ]]; then
    node -e '
      const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
      const med = (a) => { a = a.slice().sort((x, y) => x - y); const n = a.length; return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2; };
      const keys = [...new Set(rows.map((r) => r.size + " " + r.dir))];
      for (const k of keys) {
        const rs = rows.filter((r) => r.size + " " + r.dir === k);
        const lost = med(rs.map((r) => (r.sent ? (100 * r.lost) / r.sent : 0)));
        const f = (x) => Math.round(x).toLocaleString("en-US");
        console.log(`| ${rs[0].size} B | ${rs[0].dir} | ${f(med(rs.map((r) => r.txPps)))} | ${f(med(rs.map((r) => r.rxPps)))} | ${lost.toFixed(1)} | ${med(rs.map((r) => r.rxMbps)).toFixed(1)} | ${rs.reduce((s, r) => s + r.verified, 0)} / ${rs.reduce((s, r) => s + r.bad, 0)} / ${rs.reduce((s, r) => s + r.duplicates, 0)} | ${rs.reduce((s, r) => s + r.outOfOrder, 0)} |`);
      }' "$NETJ" || failed=1
  else
    echo "| - | - | - | - | - | - | - | - |"
  fi
  if ((FWD_REPS > 0)); then
    echo
    echo "Forwarding between the same two functions, io mode, paired ports, tx-first (one burst of 32 per port); received frames/s per port (mean of A and B), median of $FWD_REPS interleaved runs of ${FWD_SECS}s (+1s warm-up)"
    echo
    if ((POLL > 0)); then
      echo "| frame | testpmd | node (JS loop) | JS / testpmd | JS, pollMicros $POLL | polled / testpmd | node native forward | native / testpmd |"
      echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    else
      echo "| frame | testpmd | node (JS loop) | JS / testpmd | node native forward | native / testpmd |"
      echo "|---:|---:|---:|---:|---:|---:|"
    fi
    if [[ -s $FWDJ ]]; then
      node -e '
        const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
        const med = (a) => { a = a.slice().sort((x, y) => x - y); const n = a.length; return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2; };
        const f = (x) => Math.round(x).toLocaleString("en-US");
        for (const size of [...new Set(rows.map((r) => r.size))]) {
          const of = (m) => med(rows.filter((r) => r.size === size && r.mode === m).map((r) => r.rxPps));
          const t = of("testpmd"), n = of("node"), p = of("polled"), v = of("native");
          const polled = rows.some((r) => r.mode === "polled") ? ` ${f(p)} | ${(p / t).toFixed(2)}x |` : "";
          console.log(`| ${size} B | ${f(t)} | ${f(n)} | ${(n / t).toFixed(2)}x |${polled} ${f(v)} | ${(v / t).toFixed(2)}x |`);
        }' "$FWDJ" || failed=1
    else
      echo "| - | - | - | - |"
    fi
  fi
  echo
  echo "A = vfio:${nets[0]}, B = vfio:${nets[1]}; blk: node on vfio:$BLK_VFIO, kernel on $BLK_KERN ($DEV_K, $nq hw queues, scheduler $sched)"
} >"$TABLE"

echo
cat "$TABLE"
echo "bench-vfio-guest: done in $((SECONDS - t_begin)) s"
exit $failed

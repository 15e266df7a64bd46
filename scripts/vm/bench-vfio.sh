#!/usr/bin/env bash
# npm run bench:vfio — the library's VFIO driver against the kernel, side by side in one QEMU/TCG guest
# (see run.sh): 4 KiB random read/write at queue depth 1 and 32, node on one virtio-blk-pci function
# (vfio-pci) vs fio (io_uring, O_DIRECT) on the kernel's virtio_blk driving a second, identical one;
# then frames per second (64 B, 1500 B) between two virtio-net-pci functions (both vfio-pci) on one hub,
# and forwarding between them, DPDK's testpmd side by side with the library (installs Debian's dpdk-dev).
# Prints the markdown tables (scripts/vm/bench-vfio-guest.sh makes them).
#
#   scripts/vm/bench-vfio.sh [-v]
#
# Needs the addon built (build/Release/vdpa.node); compiles TypeScript only when dist/ is missing or
# older than the sources. Exits non-zero on any failure (guest did not run, a measurement failed, no table).
#
# Environment: VDPA_BENCH_SECONDS, VDPA_BENCH_REPS, VDPA_BENCH_DEPTHS, VDPA_BENCH_NET_SECONDS,
# VDPA_BENCH_NET_REPS, VDPA_BENCH_NET_SIZES, VDPA_BENCH_POLL_MICROS, VDPA_BENCH_FWD_SECONDS,
# VDPA_BENCH_FWD_REPS (see bench-vfio-guest.sh); VDPA_VM_BENCH_RESULTS=DIR
# (results dir; default a new dir under ~/.cache/vdpa-vm/bench-runs, kept); VDPA_VM_TIMEOUT (guest
# timeout, default 900 s).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 2
die() { echo "bench-vfio: ERROR: $*" >&2; exit 2; }
verbose=()
[[ ${1:-} == -v || ${1:-} == --verbose ]] && verbose=(-v)

[[ -f build/Release/vdpa.node ]] || die "the native addon is not built (build/Release/vdpa.node missing): run npm run build:native"
stale() {
  local js
  for js in dist/bench/vm-blk.js dist/bench/vm-net.js dist/bench/vm-net-forward.js dist/lib/index.js; do [[ -f $js ]] || return 0; done
  [[ -n $(find lib bench/vm-blk.ts bench/vm-net.ts bench/vm-net-forward.ts -name '*.ts' \( -newer dist/bench/vm-blk.js -o -newer dist/bench/vm-net.js \) -print -quit 2>/dev/null) ]]
}
if stale; then
  echo "bench-vfio: compiling TypeScript (npx tsc -p tsconfig.json)" >&2
  npx tsc -p tsconfig.json || echo "bench-vfio: WARNING: tsc reported errors (continuing with what it emitted)" >&2
fi
[[ -f dist/bench/vm-blk.js && -f dist/bench/vm-net.js ]] || die "dist/bench/vm-{blk,net}.js missing after tsc"

# The guest runs the host's binaries (9p root): DPDK's testpmd for the forwarding comparison.
if [[ ${VDPA_BENCH_FWD_REPS:-3} != 0 ]] && ! command -v dpdk-testpmd >/dev/null; then
  [[ $(id -u) == 0 ]] || die "dpdk-testpmd missing: install Debian's dpdk-dev (or set VDPA_BENCH_FWD_REPS=0)"
  echo "bench-vfio: installing dpdk-dev (dpdk-testpmd)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpdk-dev >&2 \
    || die "apt-get install dpdk-dev failed"
fi

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-vm"
if [[ -n ${VDPA_VM_BENCH_RESULTS:-} ]]; then
  RES=$VDPA_VM_BENCH_RESULTS
  mkdir -p "$RES"
else
  mkdir -p "$CACHE/bench-runs"
  find "$CACHE/bench-runs" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  RES=$(mktemp -d "$CACHE/bench-runs/run.XXXXXX")
fi
RES=$(realpath "$RES")
rm -f "$RES/bench-vfio-table.md" "$RES/bench-vfio-samples.tsv" "$RES/net.jsonl"

# Two identical, fully written (not sparse) 256 MiB raw images on the host: the functions' backing files.
IMG0=$RES/vfio-bench0.img IMG1=$RES/vfio-bench1.img
trap 'rm -f "$IMG0" "$IMG1"' EXIT
for img in "$IMG0" "$IMG1"; do
  dd if=/dev/zero of="$img" bs=1M count=256 conv=fsync status=none || die "creating $img failed"
done

load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-vfio: booting the guest (QEMU TCG; host $(nproc) CPUs, load average $load0; results in $RES)" >&2
"$HERE/run.sh" "${verbose[@]}" --results "$RES" --timeout "${VDPA_VM_TIMEOUT:-900}" \
  --blk-pci "$IMG0" --blk-pci "$IMG1" --net-pair -- bash scripts/vm/bench-vfio-guest.sh
rc=$?
load1=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-vfio: host load average before $load0, after $load1" >&2

T=$RES/bench-vfio-table.md
[[ -s $T ]] || { echo "bench-vfio: FAILED: the guest produced no table (results: $RES)" >&2; exit 1; }
rows=$(grep -c '^| rand' "$T")
((rows > 0)) || { echo "bench-vfio: FAILED: empty blk table (results: $RES)" >&2; exit 1; }
if grep -q '^| rand.*| - |' "$T"; then echo "bench-vfio: FAILED: a blk cell has no measurement (results: $RES)" >&2; exit 1; fi
grep -q '^| [0-9]* B |' "$T" || { echo "bench-vfio: FAILED: no net rows (results: $RES)" >&2; exit 1; }
((rc == 0)) || { echo "bench-vfio: FAILED: the guest run exited $rc (results: $RES)" >&2; exit "$rc"; }
echo "bench-vfio: ok (tables: $T, samples: $RES/bench-vfio-samples.tsv, $RES/net.jsonl)" >&2

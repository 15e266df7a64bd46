#!/usr/bin/env bash
# npm run bench:vm — 4 KiB random read/write at queue depth 1 and 32: the library over vhost-vdpa against
# the guest kernel's own virtio-blk driver (fio, io_uring, O_DIRECT) on the same kind of VDUSE device,
# side by side in one QEMU/TCG guest (see run.sh). Prints a markdown table with the node/kernel ratio.
#
#   scripts/vm/bench-vm.sh [-v]
#
# Needs the addon built (build/Release/vdpa.node); compiles TypeScript only when dist/ is missing or
# older than the sources. Exits non-zero on any failure (guest did not run, a measurement failed, no table).
#
# Environment: VDPA_BENCH_SECONDS, VDPA_BENCH_REPS, VDPA_BENCH_IMG_DIR, VDPA_BENCH_DEPTHS (see
# bench-guest.sh); VDPA_VM_BENCH_RESULTS=DIR (results dir; default a new dir under
# ~/.cache/vdpa-vm/bench-runs, kept); VDPA_VM_TIMEOUT (guest timeout, default 900 s).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 2
die() { echo "bench-vm: ERROR: $*" >&2; exit 2; }
verbose=()
[[ ${1:-} == -v || ${1:-} == --verbose ]] && verbose=(-v)

[[ -f build/Release/vdpa.node ]] || die "the native addon is not built (build/Release/vdpa.node missing): run npm run build:native"
if [[ ! -f dist/bench/vm-blk.js || ! -f dist/lib/index.js ]] \
   || [[ -n $(find lib bench/vm-blk.ts -name '*.ts' -newer dist/bench/vm-blk.js -print -quit 2>/dev/null) ]]; then
  echo "bench-vm: compiling TypeScript (npx tsc -p tsconfig.json)" >&2
  npx tsc -p tsconfig.json || echo "bench-vm: WARNING: tsc reported errors (continuing with what it emitted)" >&2
fi
[[ -f dist/bench/vm-blk.js ]] || die "dist/bench/vm-blk.js missing after tsc"

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
rm -f "$RES/bench-table.md" "$RES/bench-samples.tsv"

echo "bench-vm: booting the guest (QEMU TCG; results in $RES)" >&2
"$HERE/run.sh" "${verbose[@]}" --results "$RES" --timeout "${VDPA_VM_TIMEOUT:-900}" -- bash scripts/vm/bench-guest.sh
rc=$?

[[ -s $RES/bench-table.md ]] || { echo "bench-vm: FAILED: the guest produced no table (results: $RES)" >&2; exit 1; }
rows=$(grep -c '^| rand' "$RES/bench-table.md")
((rows > 0)) || { echo "bench-vm: FAILED: empty table (results: $RES)" >&2; exit 1; }
if grep -q '^| rand.*| - |' "$RES/bench-table.md"; then
  echo "bench-vm: FAILED: a cell has no measurement (results: $RES)" >&2; exit 1
fi
((rc == 0)) || { echo "bench-vm: FAILED: the guest run exited $rc (results: $RES)" >&2; exit "$rc"; }
echo "bench-vm: ok (table: $RES/bench-table.md, samples: $RES/bench-samples.tsv)" >&2

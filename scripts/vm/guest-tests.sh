#!/usr/bin/env bash
# Inside the vdpa-vm guest (started by scripts/vm/test-vm.sh through run.sh): the blk conformance suite
# against VDUSE devices of several shapes, then the test/vm/*.test.ts files. node:test writes spec to
# stdout and TAP to $VDPA_VM_RESULTS/tap/<run>.tap; a run fails on any failed, cancelled or skipped
# test, on zero tests, and on a non-zero exit. Summary in $VDPA_VM_RESULTS/summary.txt.
#
#   VDPA_VM_SHAPES="1:64 4:256 1:256 4:64"   queues:size list (default: all four)
#   VDPA_VM_SUITE=path.js                    conformance file to run (default: dist/test/conformance/blk.test.js)
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
die() { echo "guest-tests: ERROR: $*" >&2; exit 2; }
[[ ${VDPA_IN_VM:-} == 1 ]] || die "run me inside the VM (scripts/vm/test-vm.sh)"
RES=${VDPA_VM_RESULTS:?}
cd "$ROOT" || die "no $ROOT"
mkdir -p "$RES/tap"
SUMMARY=$RES/summary.txt
: >"$SUMMARY"
failed=0
note() { echo "$*" | tee -a "$SUMMARY"; }

SUITE=${VDPA_VM_SUITE:-dist/test/conformance/blk.test.js}
if [[ ! -f $SUITE ]]; then
  note "NOTE: $SUITE not built; running the stand-in dist/test/vm/blk-smoke.js instead"
  SUITE=dist/test/vm/blk-smoke.js
fi

# run_tests NAME TIMEOUT FILES... : node --test with spec on stdout and TAP in tap/NAME.tap
run_tests() {
  local name=$1 limit=$2; shift 2
  local tap=$RES/tap/$name.tap t0=$SECONDS rc
  rm -f "$tap"
  echo "==== $name: $*"
  timeout -k 10 "$limit" node --test --test-timeout=300000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" "$@"
  rc=$?
  local tests pass fail skip todo canc
  count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" 2>/dev/null | tail -n1; }
  tests=$(count tests) pass=$(count pass) fail=$(count fail) skip=$(count skipped) todo=$(count todo) canc=$(count cancelled)
  local line
  line=$(printf '%-14s tests=%s pass=%s fail=%s skipped=%s todo=%s cancelled=%s exit=%s %ss' \
    "$name" "${tests:-?}" "${pass:-?}" "${fail:-?}" "${skip:-?}" "${todo:-?}" "${canc:-?}" "$rc" $((SECONDS - t0)))
  local why=""
  ((rc == 124 || rc == 137)) && why+=" timed out after ${limit}s;"
  ((rc != 0)) && why+=" exit $rc;"
  [[ -z ${tests:-} || ${tests:-0} == 0 ]] && why+=" no tests ran;"
  [[ ${fail:-0} != 0 || ${canc:-0} != 0 ]] && why+=" failures;"
  [[ ${skip:-0} != 0 || ${todo:-0} != 0 ]] && why+=" skipped/todo tests in the guest:$(grep -E '^ *(not )?ok .*# (SKIP|TODO)' "$tap" | sed 's/^ */ [/; s/$/]/' | tr -d '\n');"
  if [[ -n $why ]]; then note "FAIL $line —$why"; failed=1; else note "ok   $line"; fi
}

for shape in ${VDPA_VM_SHAPES:-1:64 4:256 1:256 4:64}; do
  q=${shape%%:*} s=${shape##*:} name=conf-${q}x${s}
  img=$RES/$name.img
  [[ -f $img ]] || truncate -s 64M "$img"
  echo "==== starting VDUSE blk $name ($q queues x $s) on $img"
  if ! dev=$("$HERE/vduse-blk.sh" start -q "$q" -s "$s" "$name" "$img"); then
    note "FAIL $name: vduse-blk.sh start failed"; failed=1; continue
  fi
  VDPA_TEST_DEVICE=$dev VDPA_TEST_QUEUES=$q VDPA_TEST_QUEUE_SIZE=$s run_tests "$name" 300 "$SUITE"
  timeout -k 5 90 "$HERE/vduse-blk.sh" stop "$name" || { note "FAIL $name: vduse-blk.sh stop failed"; failed=1; }
done

shopt -s nullglob
vm_tests=(dist/test/vm/*.test.js)
if ((${#vm_tests[@]} == 0)); then
  note "FAIL vm: no dist/test/vm/*.test.js"; failed=1
else
  run_tests vm 600 "${vm_tests[@]}"
fi

echo "==== guest summary"
cat "$SUMMARY"
exit $failed

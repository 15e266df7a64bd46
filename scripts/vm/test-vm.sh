#!/usr/bin/env bash
# npm run test:vm — the library against real vhost-vdpa devices and VFIO virtio-pci functions in one
# QEMU/TCG guest (see run.sh).
#
#   scripts/vm/test-vm.sh [-v]
#
# Needs the addon built (build/Release/vdpa.node); compiles TypeScript (tsc) only when dist/ is missing
# or older than the sources. Creates the image files in a results dir, boots the guest once running
# scripts/vm/guest-tests.sh, then checks on the host, without the library, the bytes the data oracles
# wrote (scripts/vm/oracle-check.py: the vhost-vdpa image and both VFIO blk images) and the ext4 image
# a VDUSE device served by the library carried (scripts/vm/vduse-ext4-check.sh: e2fsck, debugfs).
# The guest gets two virtio-blk-pci functions (vfio-split.img; vfio-packed.img with packed=on; their
# serials name the image) and a --net-pair with a third NIC on its hub, for the VFIO part of guest-tests.sh
# (the third is the peer of the net hand-over test); a third blk function (mgmt-pci.img,
# serial mgmt-pci) is test/vm/management.test.ts's, which moves it between virtio-pci and vfio-pci; and two
# functions of one multifunction slot (serials grp-a, grp-b: one IOMMU group) are its non-viable group.
# The NICs' links can be changed from the guest (run.sh --net-link-control: the net suite's 'link' test,
# and announce_self for test/vm/vfio-net-features.test.ts). The NICs offer multiqueue, RSS and hash
# reports (mq=on,vectors=4,rss=on,hash=on: a hub port is one queue, so QEMU offers one pair). Two more
# NICs (MACs 52:54:00:12:34:60/61) sit on vhost-user with two queue pairs each (run.sh --net-mq-pair 2:
# DPDK's dpdk-testpmd on the host forwards between them; no network interface), for
# test/vm/vfio-net-mq.test.ts; testpmd's log is testpmd.log in the results dir.
# Exits non-zero on any failure, including: the guest never ran, zero tests ran, a test was skipped
# inside the guest.
#
# Environment: VDPA_VM_SHAPES (see guest-tests.sh; default "1:64 4:256"), VDPA_VM_TEST_RESULTS=DIR (results dir; default a
# new dir under ~/.cache/vdpa-vm/test-runs, kept), VDPA_VM_TIMEOUT (guest timeout, default 1200 s),
# VDPA_VM_BOOT_TIMEOUT and VDPA_VM_PANIC_FIRST_BOOT (see run.sh: a boot that fails before the tests start
# is retried once), VDPA_VM_DEVICE_WAIT (see vduse-blk.sh: how long each device node is waited for).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 2
die() { echo "test-vm: ERROR: $*" >&2; exit 2; }

# The guest must see the checkout, and so must the unprivileged user of the EACCES test: a checkout
# under /tmp, /run or /dev/shm (a CI clone may be) is hidden by the guest's tmpfs, and one under a
# private home directory is out of that user's reach. As root, reach it through a bind mount in
# /var/tmp for the length of this run.
if [[ $(id -u) == 0 ]]; then
  ALIAS=/var/tmp/vdpa-src.$$
  mkdir -p "$ALIAS" && mount --bind "$ROOT" "$ALIAS" || die "cannot bind-mount $ROOT on $ALIAS"
  trap 'cd / && umount "$ALIAS" 2>/dev/null; rmdir "$ALIAS" 2>/dev/null' EXIT
  ROOT=$ALIAS
  HERE=$ALIAS/scripts/vm
  cd "$ROOT" || exit 2
else
  case "$ROOT/" in
    /tmp/* | /run/* | /dev/shm/*) die "$ROOT is under /tmp, /run or /dev/shm, which the guest cannot see: move the checkout" ;;
  esac
fi
t0=$SECONDS
verbose=()
[[ ${1:-} == -v || ${1:-} == --verbose ]] && verbose=(-v)

[[ -f build/Release/vdpa.node ]] || die "the native addon is not built (build/Release/vdpa.node missing): run npm run build:native"
if [[ ! -f dist/lib/index.js || ! -f dist/test/vm/oracle.test.js || ! -f dist/test/vm/vfio.test.js ]] \
   || [[ -n $(find lib test -name '*.ts' -newer dist/lib/index.js -print -quit 2>/dev/null) ]]; then
  echo "test-vm: compiling TypeScript (npx tsc -p tsconfig.json)" >&2
  npx tsc -p tsconfig.json || echo "test-vm: WARNING: tsc reported errors (continuing with what it emitted)" >&2
fi
[[ -f dist/lib/index.js ]] || die "dist/lib/index.js missing after tsc"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-vm"
if [[ -n ${VDPA_VM_TEST_RESULTS:-} ]]; then
  RES=$VDPA_VM_TEST_RESULTS
  mkdir -p "$RES"
else
  mkdir -p "$CACHE/test-runs"
  find "$CACHE/test-runs" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  RES=$(mktemp -d "$CACHE/test-runs/run.XXXXXX")
fi
RES=$(realpath "$RES")
rm -rf "$RES/tap" "$RES/summary.txt" "$RES/oracle.json" "$RES/oracle-data.bin" "$RES"/oracle-*.json "$RES"/oracle-*-data.bin "$RES"/handover*.json "$RES"/handover*-data.bin
export VDPA_VM_SHAPES=${VDPA_VM_SHAPES:-1:64 4:256}
# Sparse, all-zero images: one per conformance shape, one for the oracle, one for the fault tests,
# one per VFIO blk function.
for shape in $VDPA_VM_SHAPES; do
  rm -f "$RES/conf-${shape%%:*}x${shape##*:}.img"; truncate -s 64M "$RES/conf-${shape%%:*}x${shape##*:}.img"
done
rm -f "$RES/vduse-ext4.expected.json"
for img in oracle faults vfio-split vfio-packed mgmt-pci grp-a grp-b vduse-ext4 handover handover-vfio; do rm -f "$RES/$img.img"; truncate -s 64M "$RES/$img.img"; done

# What test/vm/vfio-net-features.test.ts asserts about the NICs (the other NIC tests run with them too).
NET_PROPS=mq=on,vectors=4,rss=on,hash=on
echo "test-vm: booting the guest (results in $RES)" >&2
"$HERE/run.sh" "${verbose[@]}" --results "$RES" --timeout "${VDPA_VM_TIMEOUT:-1200}" \
  --blk-pci "$RES/vfio-split.img,serial=vfio-split" --blk-pci "$RES/vfio-packed.img,packed,serial=vfio-packed" \
  --blk-pci "$RES/mgmt-pci.img,serial=mgmt-pci" \
  --blk-pci "$RES/grp-a.img,serial=grp-a,addr=0x10.0,multifunction=on" --blk-pci "$RES/grp-b.img,serial=grp-b,addr=0x10.1" \
  --blk-pci "$RES/handover-vfio.img,serial=ho-vfio-a,share-rw=on" --blk-pci "$RES/handover-vfio.img,serial=ho-vfio-b,share-rw=on" \
  --net-pair --net-ports 3 --net-props "$NET_PROPS" --net-link-control --net-mq-pair 2 -- bash scripts/vm/guest-tests.sh
guest_rc=$?

fail=()
[[ -f $RES/exit-code ]] || fail+=("the guest never ran the tests (no exit code)")
[[ -f $RES/summary.txt ]] || fail+=("the guest wrote no test summary")
((guest_rc == 0)) || fail+=("guest tests exited $guest_rc")

# Re-check every TAP file here: the guest script could have died half way.
ntap=0 total=0
for tap in "$RES"/tap/*.tap; do
  [[ -f $tap ]] || continue
  ntap=$((ntap + 1))
  get() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n1; }
  n=$(get tests) f=$(get fail) s=$(get skipped) c=$(get cancelled) td=$(get todo)
  total=$((total + ${n:-0}))
  [[ ${n:-0} -gt 0 ]] || fail+=("$(basename "$tap"): zero tests ran")
  [[ ${f:-1} == 0 && ${c:-1} == 0 ]] || fail+=("$(basename "$tap"): fail=${f:-?} cancelled=${c:-?}")
  [[ ${s:-1} == 0 && ${td:-1} == 0 ]] || fail+=("$(basename "$tap"): skipped=${s:-?} todo=${td:-?} inside the guest")
done
((ntap > 0)) || fail+=("no TAP results from the guest")

echo "---- data oracle (host side, without the library)"
python3 "$HERE/oracle-check.py" "$RES" oracle.json oracle-vfio-split.json oracle-vfio-packed.json handover.json handover-vfio.json || fail+=("the host-side data oracle failed")

echo "---- VDUSE ext4 image (host side, without the library: e2fsck and debugfs)"
"$HERE/vduse-ext4-check.sh" "$RES" || fail+=("the host-side check of the VDUSE ext4 image failed")

echo "---- guest test summary"
cat "$RES/summary.txt" 2>/dev/null || echo "(none)"
echo "---- $ntap test runs, $total tests; wall time $((SECONDS - t0)) s; results: $RES"
if ((${#fail[@]})); then
  printf 'test-vm: FAIL: %s\n' "${fail[@]}" >&2
  exit 1
fi
echo "test-vm: all passed"

#!/usr/bin/env bash
# Inside the vdpa-vm guest (started by scripts/vm/test-vm.sh through run.sh): the blk conformance suite
# against VDUSE devices of several shapes, then the test/vm/*.test.ts files for vhost-vdpa, then
# test/vm/vduse.test.ts (a VDUSE blk device served by the library, ext4 through the kernel's virtio_blk), then
# test/vm/management.test.ts (the management API: vdpa devices and the mgmt-pci function); then VFIO:
# the virtio-pci functions (virtio-blk 0x1042: serial vfio-split and vfio-packed; virtio-net 0x1041:
# a wired pair and a third NIC on the same hub) are found in /sys/bus/pci/devices, bound to vfio-pci,
# and get the blk conformance suite (split; packed with VDPA_TEST_PACKED=1), the net conformance suite
# in both directions on the pair, test/vm/vfio.test.ts, test/vm/handover-net.test.ts (a NetDevice
# moved between the pair's functions, the third as its peer), test/vm/vfio-net-features.test.ts
# (multiqueue, RSS, announce_self on the pair; needs --net-link-control) and test/vm/vfio-net-mq.test.ts
# (two queue pairs on the vhost-user NICs of --net-mq-pair 2, MACs 52:54:00:12:34:60/61). node:test writes spec to
# stdout and TAP to $VDPA_VM_RESULTS/tap/<run>.tap; a run fails on any failed, cancelled or skipped
# test, on zero tests, and on a non-zero exit. Summary in $VDPA_VM_RESULTS/summary.txt.
#
#   VDPA_VM_SHAPES="1:64 4:256 1:256 4:64"   queues:size list (default: "1:64 4:256")
#   VDPA_VM_SUITE=path.js                    conformance file to run (default: dist/test/conformance/blk.test.js)
#   VDPA_VM_NET_SUITE=path.js                net conformance file (default: dist/test/conformance/net.test.js)
#   VDPA_VM_VFIO=0                           skip the VFIO part (it fails when the functions are missing)
#   VDPA_VM_VDUSE_SHAPES="1:64 4:256"        queues:size list for the Node VDUSE conformance runs
#   VDPA_VM_ONLY_VDUSE=1                     run only the Node VDUSE part (while developing it)
#   VDPA_VM_ONLY_VDUSE_NET=1                 run only the Node VDUSE NIC part
#   VDPA_VM_ONLY_VFIO_NET=1                  run only the VFIO NIC groups (net conformance both ways,
#                                            handover-net, vfio-net-features, vfio-net-mq): boot with
#                                            run.sh --net-pair --net-ports 3 --net-link-control
#                                            --net-mq-pair 2 [--net-props ...]
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

# Removes every vdpa device (and stops its daemon, which flushes its image). Run once the node
# process that used them has exited: the library's dev del refuses (EBUSY) while /dev/vhost-vdpa-N is held.
cleanup_devices() {
  local d name
  for d in /sys/bus/vdpa/devices/*; do
    [[ -e $d ]] || continue
    name=${d##*/}
    timeout -k 5 90 "$HERE/vduse-blk.sh" stop "$name" || { note "FAIL removing vdpa device $name (stop hung or failed)"; failed=1; }
  done
  for d in /run/vduse-blk/*.pid; do   # daemons whose vdpa device is already gone
    [[ -e $d ]] || continue
    name=${d##*/}; timeout -k 5 30 "$HERE/vduse-blk.sh" stop "${name%.pid}" || true
  done
}

# ---- VDUSE devices served by the library (Node is the device): the kernel's virtio_blk as the driver
# (test/vm/vduse.test.ts), then the blk conformance suite through vhost_vdpa from another process
vduse_part() {
  if [[ -f dist/test/vm/vduse.test.js ]]; then
    run_tests vduse 600 dist/test/vm/vduse.test.js
    cleanup_devices
  else
    note "FAIL vduse: dist/test/vm/vduse.test.js not built"; failed=1
  fi
  local shape
  for shape in ${VDPA_VM_VDUSE_SHAPES:-1:64 4:256}; do vduse_conformance "${shape%%:*}" "${shape##*:}"; done
}
# vduse_conformance QUEUES SIZE : dist/test/vm/vduse-serve.js serves a RAM disk on vhost_vdpa; the suite
# runs in this (other) process's node against its /dev/vhost-vdpa-N
vduse_conformance() {
  local q=$1 s=$2 name=nodeconf-$1x$2 log=$RES/nodeconf-$1x$2.serve.log dev="" pid i rc
  node dist/test/vm/vduse-serve.js "$name" vhost_vdpa capacity=$((64 << 20)) numQueues="$q" queueSize="$s" \
    >"$log.out" 2>"$log" &
  pid=$!
  for ((i = 0; i < 1200; i++)); do
    dev=$(head -n1 "$log.out" 2>/dev/null)
    [[ -n $dev ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $dev != /dev/vhost-vdpa-* ]]; then
    note "FAIL $name: vduse-serve.js did not attach: $(tr '\n' ' ' <"$log")"; failed=1
    kill -TERM "$pid" 2>/dev/null; wait "$pid"; return
  fi
  echo "==== Node VDUSE blk $name ($q queues x $s) on $dev, served by pid $pid"
  VDPA_TEST_DEVICE=$dev VDPA_TEST_QUEUES=$q VDPA_TEST_QUEUE_SIZE=$s run_tests "$name" 300 "$SUITE"
  kill -TERM "$pid"
  timeout 60 tail --pid="$pid" -f /dev/null
  wait "$pid"; rc=$?
  cat "$log"
  ((rc == 0)) || { note "FAIL $name: vduse-serve.js exited $rc on SIGTERM (close failed?)"; failed=1; }
}
# ---- VDUSE NICs served by the library (test/vm/vduse-net.test.ts: two NICs on a wire behind the kernel's
# virtio_net in two namespaces, link changes, openNet over vhost_vdpa), then the net conformance suite over
# vhost_vdpa on two Node NICs on a native wire served by another process (vduse-net-serve.js), whose link
# the suite changes through a request file the serve script carries out
vduse_net_part() {
  if [[ -f dist/test/vm/vduse-net.test.js ]]; then
    run_tests vduse-net 600 dist/test/vm/vduse-net.test.js
    cleanup_devices
  else
    note "FAIL vduse-net: dist/test/vm/vduse-net.test.js not built"; failed=1
  fi
  vduse_net_conformance vduse-net-conf 1500 0
  vduse_net_conformance vduse-net-conf-9000-csum 9000 1
  vduse_net_conformance vduse-net-conf-gso 1500 gso
}
# vduse_net_conformance NAME MTU OFFLOADS : vduse-net-serve.js serves the pair, the suite runs here
# (OFFLOADS 0, 1 = checksums, gso = segmentation and checksums, offered by the NICs and asked for)
vduse_net_conformance() {
  local name=$1 mtu=$2 offloads=$3 log=$RES/$1.serve.log req=$RES/$1.link-request devs="" pid i rc gso=0
  [[ $offloads == gso ]] && { gso=1; offloads=1; }
  rm -f "$req"
  node dist/test/vm/vduse-net-serve.js nodenetc0 nodenetc1 linkRequests="$req" mtu="$mtu" gso="$gso" >"$log.out" 2>"$log" &
  pid=$!
  for ((i = 0; i < 1200; i++)); do
    devs=$(head -n1 "$log.out" 2>/dev/null)
    [[ -n $devs ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $devs != /dev/vhost-vdpa-*" "/dev/vhost-vdpa-* ]]; then
    note "FAIL $name: vduse-net-serve.js did not attach: $(tr '\n' ' ' <"$log")"; failed=1
    kill -TERM "$pid" 2>/dev/null; wait "$pid"; return
  fi
  echo "==== Node VDUSE NICs (mtu $mtu, offloads $offloads) on ${devs% *} and ${devs#* }, served by pid $pid"
  VDPA_TEST_NET_DEVICE=${devs% *} VDPA_TEST_NET_PEER=${devs#* } VDPA_TEST_NET_LINK_REQUEST=$req \
    VDPA_TEST_NET_OFFLOADS=$offloads VDPA_TEST_NET_GSO=$gso run_tests "$name" 300 "${VDPA_VM_NET_SUITE:-dist/test/conformance/net.test.js}"
  kill -TERM "$pid"
  timeout 60 tail --pid="$pid" -f /dev/null
  wait "$pid"; rc=$?
  cat "$log"
  ((rc == 0)) || { note "FAIL $name: vduse-net-serve.js exited $rc on SIGTERM (close failed?)"; failed=1; }
}
# ---- VFIO: virtio-pci functions bound to vfio-pci
# fn_with VENDOR DEVICE : PCI addresses of the functions with these ids, in address order
fn_with() {
  local d
  for d in /sys/bus/pci/devices/*; do
    [[ $(cat "$d/vendor" 2>/dev/null) == "$1" && $(cat "$d/device" 2>/dev/null) == "$2" ]] && echo "${d##*/}"
  done
}
# bind_vfio BDF : driver_override, unbind from its driver, drivers_probe
bind_vfio() {
  local b=$1 d=/sys/bus/pci/devices/$1
  [[ $(basename "$(readlink "$d/driver" 2>/dev/null)") == vfio-pci ]] && return 0
  echo vfio-pci >"$d/driver_override" || return 1
  if [[ -e $d/driver ]]; then timeout 30 sh -c "echo $b > $d/driver/unbind" || return 1; fi
  echo "$b" >/sys/bus/pci/drivers_probe || return 1
  [[ $(basename "$(readlink "$d/driver" 2>/dev/null)") == vfio-pci ]]
}
# The hub NICs by MAC (run.sh: NIC i is 52:54:00:12:34:5i), read while virtio-pci has them: the first
# two are the conformance pair (nets[0], nets[1]), the third the hand-over's peer (net_peer).
find_hub_nics() {
  local b mac
  for b in $(fn_with 0x1af4 0x1041); do
    mac=$(cat /sys/bus/pci/devices/"$b"/virtio*/net/*/address 2>/dev/null)
    case $mac in
      52:54:00:12:34:50) nets[0]=$b ;;
      52:54:00:12:34:51) nets[1]=$b ;;
      52:54:00:12:34:52) net_peer=$b ;;
    esac
  done
}
vfio_part() {
  modprobe vfio-pci 2>/dev/null || true
  [[ -d /sys/bus/pci/drivers/vfio-pci ]] || { note "FAIL vfio: no vfio-pci driver in the guest"; failed=1; return; }
  local b serial split="" packed="" nets=() blks=() net_peer=
  # (no process substitution: the guest has no /dev/fd)
  blks=($(fn_with 0x1af4 0x1042))
  nets=("" "")
  find_hub_nics
  # The blk functions are told apart by their serial (set by test-vm.sh), read while virtio-pci has them.
  for b in "${blks[@]}"; do
    serial=$(cat /sys/bus/pci/devices/"$b"/virtio*/block/*/serial 2>/dev/null)
    case $serial in
      vfio-split) split=$b ;;
      vfio-packed) packed=$b ;;
    esac
  done
  echo "==== VFIO functions: blk ${blks[*]:-none} (split=${split:-?} packed=${packed:-?}); net ${nets[*]} (peer ${net_peer:-?})"
  if [[ -z $split || -z $packed || -z ${nets[0]} || -z ${nets[1]} || -z $net_peer ]]; then
    note "FAIL vfio: expected virtio-blk-pci serials vfio-split + vfio-packed and three virtio-net-pci, MACs 52:54:00:12:34:50-52 (blk: ${blks[*]:-none}; net: ${nets[*]} ${net_peer}); boot with test-vm.sh"
    failed=1; return
  fi
  for b in "$split" "$packed" "${nets[@]}" "$net_peer"; do
    bind_vfio "$b" || { note "FAIL vfio: could not bind $b to vfio-pci"; failed=1; return; }
  done
  export VDPA_VFIO_BLK_SPLIT=$split VDPA_VFIO_BLK_PACKED=$packed VDPA_VFIO_NET="${nets[*]}" VDPA_VFIO_NET_PEER=$net_peer
  local net_suite=${VDPA_VM_NET_SUITE:-dist/test/conformance/net.test.js}
  VDPA_TEST_DEVICE=vfio:$split VDPA_TEST_QUEUES=2 VDPA_TEST_QUEUE_SIZE=256 run_tests vfio-blk-split 180 "$SUITE"
  VDPA_TEST_DEVICE=vfio:$packed VDPA_TEST_QUEUES=2 VDPA_TEST_QUEUE_SIZE=256 VDPA_TEST_PACKED=1 run_tests vfio-blk-packed 180 "$SUITE"
  VDPA_TEST_NET_DEVICE=vfio:${nets[0]} VDPA_TEST_NET_PEER=vfio:${nets[1]} run_tests vfio-net-0to1 180 "$net_suite"
  VDPA_TEST_NET_DEVICE=vfio:${nets[1]} VDPA_TEST_NET_PEER=vfio:${nets[0]} run_tests vfio-net-1to0 180 "$net_suite"
  if [[ -f dist/test/vm/vfio.test.js ]]; then
    run_tests vfio 360 dist/test/vm/vfio.test.js
  else
    note "FAIL vfio: dist/test/vm/vfio.test.js not built"; failed=1
  fi
  vfio_net_groups
}
# The NIC groups of the VFIO part (the pair and the peer bound to vfio-pci, VDPA_VFIO_NET* exported).
vfio_net_groups() {
  local net_suite=${VDPA_VM_NET_SUITE:-dist/test/conformance/net.test.js}
  if [[ ${VDPA_VM_ONLY_VFIO_NET:-0} == 1 ]]; then
    VDPA_TEST_NET_DEVICE=vfio:${nets[0]} VDPA_TEST_NET_PEER=vfio:${nets[1]} run_tests vfio-net-0to1 180 "$net_suite"
    VDPA_TEST_NET_DEVICE=vfio:${nets[1]} VDPA_TEST_NET_PEER=vfio:${nets[0]} run_tests vfio-net-1to0 180 "$net_suite"
  fi
  # hand-over (issue 12): a NetDevice moves between the pair's functions, frames flowing with the third
  if [[ -f dist/test/vm/handover-net.test.js ]]; then
    run_tests handover-net 600 dist/test/vm/handover-net.test.js
  else
    note "FAIL handover-net: dist/test/vm/handover-net.test.js not built"; failed=1
  fi
  # issue 11 on QEMU's NIC: multiqueue, RSS + hash reports, announce, stats
  if [[ -f dist/test/vm/vfio-net-features.test.js ]]; then
    run_tests vfio-net-features 300 dist/test/vm/vfio-net-features.test.js
  else
    note "FAIL vfio-net-features: dist/test/vm/vfio-net-features.test.js not built"; failed=1
  fi
  # multiqueue with more than one pair: the vhost-user NICs of run.sh --net-mq-pair (MACs :60/:61),
  # found by MAC and bound to vfio-pci by the test itself
  if [[ -f dist/test/vm/vfio-net-mq.test.js ]]; then
    run_tests vfio-net-mq 300 dist/test/vm/vfio-net-mq.test.js
  else
    note "FAIL vfio-net-mq: dist/test/vm/vfio-net-mq.test.js not built"; failed=1
  fi
}
# VDPA_VM_ONLY_VFIO_NET=1: only the NICs, found by MAC and bound to vfio-pci, then their groups.
vfio_net_only() {
  modprobe vfio-pci 2>/dev/null || true
  local b
  nets=("" "") net_peer=""
  find_hub_nics
  if [[ -z ${nets[0]} || -z ${nets[1]} || -z $net_peer ]]; then
    note "FAIL vfio-net: expected three virtio-net-pci, MACs 52:54:00:12:34:50-52 (run.sh --net-pair --net-ports 3)"; failed=1; return
  fi
  for b in "${nets[@]}" "$net_peer"; do
    bind_vfio "$b" || { note "FAIL vfio-net: could not bind $b to vfio-pci"; failed=1; return; }
  done
  export VDPA_VFIO_NET="${nets[*]}" VDPA_VFIO_NET_PEER=$net_peer
  vfio_net_groups
}
if [[ ${VDPA_VM_ONLY_VFIO_NET:-0} == 1 ]]; then
  vfio_net_only
  echo "==== guest summary"; cat "$SUMMARY"; exit $failed
fi
if [[ ${VDPA_VM_ONLY_VDUSE_NET:-0} == 1 ]]; then
  vduse_net_part
  echo "==== guest summary"; cat "$SUMMARY"; exit $failed
fi
if [[ ${VDPA_VM_ONLY_VDUSE:-0} == 1 ]]; then
  vduse_part
  vduse_net_part
  echo "==== guest summary"; cat "$SUMMARY"; exit $failed
fi

for shape in ${VDPA_VM_SHAPES:-1:64 4:256}; do
  q=${shape%%:*} s=${shape##*:} name=conf-${q}x${s}
  img=$RES/$name.img
  [[ -f $img ]] || truncate -s 64M "$img"
  echo "==== starting VDUSE blk $name ($q queues x $s) on $img"
  if ! dev=$("$HERE/vduse-blk.sh" start -q "$q" -s "$s" "$name" "$img"); then
    note "FAIL $name: vduse-blk.sh start failed"; failed=1; continue
  fi
  VDPA_TEST_DEVICE=$dev VDPA_TEST_QUEUES=$q VDPA_TEST_QUEUE_SIZE=$s run_tests "$name" 180 "$SUITE"
  cleanup_devices
done

shopt -s nullglob
vm_tests=()
for f in dist/test/vm/*.test.js; do [[ $f == */vfio.test.js || $f == */vfio-net-features.test.js || $f == */vfio-net-mq.test.js || $f == */management.test.js || $f == */vduse*.test.js || $f == */handover*.test.js ]] || vm_tests+=("$f"); done
if ((${#vm_tests[@]} == 0)); then
  note "FAIL vm: no dist/test/vm/*.test.js"; failed=1
else
  run_tests vm 420 "${vm_tests[@]}"
  cleanup_devices
fi

# ---- VDUSE devices served by the library
vduse_part
vduse_net_part

# ---- hand-over (issue 12): a load moves qemu-storage-daemon -> Node VDUSE -> restarted qemu-storage-daemon,
# then 20 more switches; the host checks handover.img against handover.json
if [[ -f dist/test/vm/handover.test.js ]]; then
  run_tests handover 900 dist/test/vm/handover.test.js
  cleanup_devices
else
  note "FAIL handover: dist/test/vm/handover.test.js not built"; failed=1
fi
# the same between two VFIO virtio-blk-pci functions on one image (serials ho-vfio-a/b, share-rw=on)
if [[ -f dist/test/vm/handover-vfio.test.js ]]; then
  modprobe vfio-pci 2>/dev/null || true
  run_tests handover-vfio 900 dist/test/vm/handover-vfio.test.js
else
  note "FAIL handover-vfio: dist/test/vm/handover-vfio.test.js not built"; failed=1
fi

# ---- vDPA management through the library (netlink + sysfs): VDUSE devices, and the mgmt-pci function
# moved between virtio-pci and vfio-pci (before the VFIO part binds the other functions)
if [[ -f dist/test/vm/management.test.js ]]; then
  run_tests management 420 dist/test/vm/management.test.js
  cleanup_devices
else
  note "FAIL management: dist/test/vm/management.test.js not built"; failed=1
fi

if [[ ${VDPA_VM_VFIO:-1} != 0 ]]; then vfio_part; else note "NOTE: VFIO part skipped (VDPA_VM_VFIO=0)"; fi

echo "==== guest summary"
cat "$SUMMARY"
exit $failed

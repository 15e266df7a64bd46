#!/usr/bin/env bash
# Inside the vdpa-vm guest (VDPA_IN_VM=1): create / remove a VDUSE virtio-blk device backed by a file.
#
#   vduse-blk.sh start [-q NUM_QUEUES] [-s QUEUE_SIZE] [--virtio] NAME IMG
#       Starts qemu-storage-daemon exporting IMG as VDUSE device NAME, adds the vDPA device and makes
#       sure it is bound to vhost_vdpa; prints its char device (/dev/vhost-vdpa-N).
#       With --virtio it is bound to virtio_vdpa instead (the guest kernel's own virtio-blk driver)
#       and the block device (/dev/vdX) is printed.
#       Defaults: 1 queue, queue size 256. Each step (the VDUSE node, the vdpa device, its char or block
#       device) is waited for, up to VDPA_VM_DEVICE_WAIT seconds (default 30), then fails naming it.
#   vduse-blk.sh stop NAME
#       Removes the vDPA device and stops its daemon (flushes IMG).
set -euo pipefail

STATE=/run/vduse-blk   # guest tmpfs
die() { echo "vduse-blk: ERROR: $*" >&2; exit 1; }

DEVICE_WAIT=${VDPA_VM_DEVICE_WAIT:-30}
[[ $DEVICE_WAIT =~ ^[1-9][0-9]*$ ]] || die "VDPA_VM_DEVICE_WAIT must be a whole number of seconds, got '$DEVICE_WAIT'"

# wait_for CMD... : poll CMD every 0.1 s until it succeeds; fail after DEVICE_WAIT s (TCG is slow)
wait_for() {
  local deadline=$((SECONDS + DEVICE_WAIT))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

daemon_pid() { cat "$STATE/$1.pid" 2>/dev/null || true; }

# The char device qemu-storage-daemon creates for NAME; fails the start at once when the daemon died.
vduse_node_ready() {
  [[ -c /dev/vduse/$1 ]] && return 0
  local pid
  pid=$(daemon_pid "$1")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || die "qemu-storage-daemon for $1 exited before /dev/vduse/$1 appeared"
  return 1
}

bound_driver() {  # prints the vdpa bus driver NAME is bound to, or nothing
  local l=/sys/bus/vdpa/devices/$1/driver
  [[ -L $l ]] && basename "$(readlink "$l")" || true
}

# Bind vdpa device $1 to driver $2 (vhost_vdpa | virtio_vdpa). A new vdpa device binds to the first
# registered driver that matches; the guest's init loads vhost_vdpa before virtio_vdpa, so the
# default is vhost_vdpa, but driver_override makes it explicit either way.
bind_to() {
  local dev=$1 want=$2 cur
  [[ -d /sys/bus/vdpa/drivers/$want ]] || modprobe "$want" 2>/dev/null || die "driver $want not loaded"
  echo "$want" >"/sys/bus/vdpa/devices/$dev/driver_override"
  cur=$(bound_driver "$dev")
  [[ $cur == "$want" ]] && return 0
  [[ -n $cur ]] && echo "$dev" >"/sys/bus/vdpa/drivers/$cur/unbind"
  echo "$dev" >/sys/bus/vdpa/drivers_probe
  [[ $(bound_driver "$dev") == "$want" ]] || die "could not bind $dev to $want (bound: $(bound_driver "$dev"))"
}

# fail_start NAME MESSAGE : undo a half-done start, then fail with MESSAGE
fail_start() {
  stop "$1" >&2 || true
  die "$2"
}

start() {
  local nq=1 qs=256 virtio=0
  while [[ $# -gt 0 && $1 == -* ]]; do
    case $1 in
      -q) nq=$2; shift 2 ;;
      -s) qs=$2; shift 2 ;;
      --virtio) virtio=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ $# -eq 2 ]] || die "usage: vduse-blk.sh start [-q N] [-s Q] [--virtio] NAME IMG"
  local name=$1 img=$2
  [[ -f $img || -b $img ]] || die "no such image: $img"
  [[ -e /dev/vduse/control ]] || die "/dev/vduse/control missing (vduse module not loaded? not in the VM?)"
  [[ ! -e /sys/bus/vdpa/devices/$name ]] || die "vdpa device $name already exists"
  mkdir -p "$STATE"
  # --daemonize: the parent exits once the export is set up. Its node is waited for all the same:
  # under TCG the daemon has been seen taking over 2 s to create it.
  qemu-storage-daemon --daemonize --pidfile "$STATE/$name.pid" \
    --blockdev "driver=file,node-name=f0,filename=$img" \
    --export "vduse-blk,id=v0,node-name=f0,name=$name,writable=on,num-queues=$nq,queue-size=$qs" \
    || die "qemu-storage-daemon failed"
  wait_for vduse_node_ready "$name" \
    || fail_start "$name" "/dev/vduse/$name did not appear within ${DEVICE_WAIT}s of starting qemu-storage-daemon (pid $(daemon_pid "$name"))"
  vdpa dev add name "$name" mgmtdev vduse || fail_start "$name" "vdpa dev add $name failed"
  wait_for test -d "/sys/bus/vdpa/devices/$name" \
    || fail_start "$name" "vdpa device $name did not appear in /sys/bus/vdpa/devices within ${DEVICE_WAIT}s of vdpa dev add"

  if ((virtio)); then
    bind_to "$name" virtio_vdpa
    local b
    wait_for eval 'b=$(ls -d /sys/bus/vdpa/devices/'"$name"'/virtio*/block/* 2>/dev/null | head -n1); [[ -n $b ]]' \
      || fail_start "$name" "no block device for $name in sysfs within ${DEVICE_WAIT}s of binding it to virtio_vdpa"
    b=/dev/${b##*/}
    wait_for test -b "$b" || fail_start "$name" "$b did not appear within ${DEVICE_WAIT}s"
    echo "$b"
  else
    bind_to "$name" vhost_vdpa
    local v
    wait_for eval 'v=$(ls -d /sys/bus/vdpa/devices/'"$name"'/vhost-vdpa-* 2>/dev/null | head -n1); [[ -n $v ]]' \
      || fail_start "$name" "no vhost-vdpa-N for $name in sysfs within ${DEVICE_WAIT}s of binding it to vhost_vdpa"
    v=/dev/${v##*/}
    wait_for test -c "$v" || fail_start "$name" "$v did not appear within ${DEVICE_WAIT}s"
    echo "$v"
  fi
}

stop() {
  [[ $# -eq 1 ]] || die "usage: vduse-blk.sh stop NAME"
  local name=$1 pid
  if [[ -e /sys/bus/vdpa/devices/$name ]]; then
    vdpa dev del "$name" || echo "vduse-blk: warning: vdpa dev del $name failed" >&2
  fi
  if [[ -f $STATE/$name.pid ]]; then
    pid=$(cat "$STATE/$name.pid")
    # SIGTERM: the daemon flushes the image and destroys /dev/vduse/NAME before exiting.
    kill "$pid" 2>/dev/null || true
    wait_for eval "! kill -0 $pid 2>/dev/null" || { kill -9 "$pid" 2>/dev/null || true; }
    rm -f "$STATE/$name.pid"
  fi
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: vduse-blk.sh start [-q N] [-s Q] [--virtio] NAME IMG | stop NAME" ;;
esac

#!/usr/bin/env bash
# Inside the vdpa-vm guest (VDPA_IN_VM=1): create / remove a VDUSE virtio-blk device backed by a file.
#
#   vduse-blk.sh start [-q NUM_QUEUES] [-s QUEUE_SIZE] [--virtio] NAME IMG
#       Starts qemu-storage-daemon exporting IMG as VDUSE device NAME, adds the vDPA device and binds
#       it to vhost_vdpa with the library's CLI (dist/lib/cli.js: dev add, bind); prints its char device
#       (/dev/vhost-vdpa-N).
#       With --virtio it is bound to virtio_vdpa instead (the guest kernel's own virtio-blk driver)
#       and the block device (/dev/vdX) is printed.
#       Defaults: 1 queue, queue size 256. The VDUSE node is waited for up to VDPA_VM_DEVICE_WAIT seconds
#       (default 30); the library bounds its own waits for the vdpa device's char or block device.
#   vduse-blk.sh stop NAME
#       Removes the vDPA device (the CLI's dev del) and stops its daemon (flushes IMG).
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

# The library's own CLI (the management API: vdpa netlink and sysfs), not iproute2's `vdpa`.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
vdpa_cli() { node "$ROOT/dist/lib/cli.js" "$@"; }

# bind_to NAME DRIVER FIELD : binds vdpa device NAME to DRIVER (vhost_vdpa | virtio_vdpa) and prints
# FIELD of the entry bindDriver resolves with (`path`: /dev/vhost-vdpa-N, `blockDevice`: /dev/vdX), which
# exists by then: the library waits, bounded, for the kernel to make it.
bind_to() {
  local entry
  entry=$(vdpa_cli bind "$1" "$2" --json) || return 1
  printf '%s' "$entry" | node -e '
    const v = JSON.parse(require("fs").readFileSync(0, "utf8"))[process.argv[1]];
    if (typeof v !== "string") { console.error(`bind: the entry has no ${process.argv[1]}`); process.exit(1); }
    console.log(v);' "$3"
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
  vdpa_cli dev add "$name" mgmtdev vduse >/dev/null || fail_start "$name" "dev add $name failed"
  local node
  if ((virtio)); then
    node=$(bind_to "$name" virtio_vdpa blockDevice) || fail_start "$name" "binding $name to virtio_vdpa failed"
  else
    node=$(bind_to "$name" vhost_vdpa path) || fail_start "$name" "binding $name to vhost_vdpa failed"
  fi
  echo "$node"
}

stop() {
  [[ $# -eq 1 ]] || die "usage: vduse-blk.sh stop NAME"
  local name=$1 pid
  if [[ -e /sys/bus/vdpa/devices/$name ]]; then
    vdpa_cli dev del "$name" || echo "vduse-blk: warning: dev del $name failed" >&2
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

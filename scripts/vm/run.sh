#!/usr/bin/env bash
# Run a command inside a throw-away Linux 6.12 guest (QEMU/TCG) whose root is the host's / (read-only).
#
#   scripts/vm/run.sh [options] -- <command...>
#
# Options:
#   --blk-pci IMG[,packed][,key=val...]  add a virtio-blk-pci (modern only, behind the vIOMMU) backed by
#                                 the raw file IMG; key=val pairs go to -device (e.g. num-queues=4).
#                                 Repeatable.
#   --net-pair                    add two virtio-net-pci NICs wired together on one QEMU hub
#   --net-ports N                 NICs on that hub (2 or 3; default 2): NIC i has MAC 52:54:00:12:34:5i
#   --net-props KEY=VAL[,...]     extra -device properties for both NICs of --net-pair (e.g.
#                                 host_mtu=9000, packed=on, mrg_rxbuf=off, ctrl_vq=off)
#   --net-link-control            let the command change the link of the --net-pair NICs: NIC i (MAC
#                                 52:54:00:12:34:5i) is on hub port hpi; the command writes "hpi off" or
#                                 "hpi on" to the file VDPA_TEST_NET_LINK_REQUEST names, and the host
#                                 runs QEMU's set_link on it (through a monitor socket in the results dir);
#                                 "announce" runs QEMU's announce_self (every NIC: VIRTIO_NET_S_ANNOUNCE
#                                 where GUEST_ANNOUNCE was negotiated, and a RARP from each on the hub)
#   --net-mq-pair QUEUES          add two more virtio-net-pci NICs (MACs 52:54:00:12:34:60 and :61, mq=on,
#                                 QUEUES pairs, 2 to 8) on vhost-user: the host runs DPDK's dpdk-testpmd for
#                                 the length of the guest run with two vhost-user ports (unix sockets in the
#                                 results dir, no network interface) and io forwarding between them, queue
#                                 q of one NIC to queue q of the other; its log is testpmd.log in the results
#                                 dir. Guest memory becomes a shared memfd (vhost-user maps it). The NICs
#                                 have no MSI-X (vectors=0: QEMU 7.2 under TCG crashes starting a vhost-user
#                                 NIC with MSI-X), so drivers use INTx. The command gets
#                                 VDPA_VM_NET_MQ_PAIRS=QUEUES.
#   --timeout SECONDS             kill the guest after this long (default 900)
#   --mem SIZE / --smp N          guest memory (default 4G) / vCPUs (default 2)
#   --9p-cache MODE               9p cache mode for the host root: loose (default), mmap, none
#   --append ARGS                 extra guest kernel command line arguments
#   -e NAME[=VALUE]               pass another environment variable to the command
#   -v | --verbose                stream the guest console to stderr (default: only on failure)
#   --results DIR                 use DIR (created if needed, never deleted) as the results dir, so the
#                                 caller can inspect files the command left there; must not be under
#                                 /tmp, /run or /dev/shm (guest tmpfs)
#   --keep                        keep the auto-created results dir; always kept on failure
#
# Inside the guest the command runs in the caller's cwd with PATH, HOME, VDPA_*, ... from the caller,
# plus VDPA_IN_VM=1 and VDPA_VM_RESULTS=<dir>: a writable dir, at the same path on host and guest
# (the rest of / is read-only; /tmp, /run and /dev/shm are guest tmpfs). Its stdout+stderr are
# printed after the guest exits; run.sh exits with the command's exit code, or 99 when the command never
# finished (the guest did not boot twice, timed out, or its kernel crashed), or 98 when it exited 0 but
# the guest kernel crashed (panic or Oops) while it ran.
#
# A boot that fails before the command starts (an early-boot kernel Oops under TCG) is retried once.
# Environment: VDPA_VM_BOOT_TIMEOUT (seconds from starting QEMU to the command starting; default 300),
# VDPA_VM_PANIC_FIRST_BOOT=1 (the first boot's init panics before the command: tests the retry).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "vdpa-vm: ERROR: $*" >&2; exit 1; }

append_extra="" timeout_s=900 mem=4G smp=2 verbose=0 keep=0 results_dir=""
devs=() extra_env=() init_env=() nblk=0 net_pair=0 net_ports=2 net_props="" net_link=0 net_mq=0
boot_timeout_s=${VDPA_VM_BOOT_TIMEOUT:-300} panic_first_boot=${VDPA_VM_PANIC_FIRST_BOOT:-0}
[[ $boot_timeout_s =~ ^[1-9][0-9]*$ ]] || die "VDPA_VM_BOOT_TIMEOUT must be a whole number of seconds, got '$boot_timeout_s'"
[[ $panic_first_boot == [01] ]] || die "VDPA_VM_PANIC_FIRST_BOOT must be 0 or 1, got '$panic_first_boot'"
while (($#)); do
  case $1 in
    --blk-pci)
      [[ $# -ge 2 ]] || die "--blk-pci needs IMG"
      IFS=, read -r -a parts <<<"$2"
      img=${parts[0]}
      [[ -f $img ]] || die "--blk-pci: no such image file: $img"
      props=""
      for p in "${parts[@]:1}"; do
        case $p in packed) props+=",packed=on" ;; *=*) props+=",$p" ;; *) die "--blk-pci: unknown flag $p" ;; esac
      done
      devs+=(-drive "file=$(realpath "$img"),if=none,format=raw,id=blk$nblk,cache=writeback,aio=threads"
        -device "virtio-blk-pci,drive=blk$nblk,disable-legacy=on,iommu_platform=on$props")
      nblk=$((nblk + 1)); shift 2 ;;
    --net-pair) net_pair=1; shift ;;
    --net-link-control) net_link=1; shift ;;
    --net-ports)
      [[ $# -ge 2 && $2 =~ ^[23]$ ]] || die "--net-ports needs 2 or 3"
      net_ports=$2; shift 2 ;;
    --net-mq-pair)
      [[ $# -ge 2 && $2 =~ ^[2-8]$ ]] || die "--net-mq-pair needs QUEUES, 2 to 8"
      net_mq=$2; shift 2 ;;
    --net-props)
      [[ $# -ge 2 && $2 =~ ^[a-z_]+=[A-Za-z0-9_]+(,[a-z_]+=[A-Za-z0-9_]+)*$ ]] || die "--net-props needs KEY=VAL[,KEY=VAL...]"
      net_props+=",$2"; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --append) append_extra+=" $2"; shift 2 ;;
    --9p-cache) init_env+=("HOST_9P_CACHE=$2"); shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    -e) extra_env+=("$2"); shift 2 ;;
    -v|--verbose) verbose=1; shift ;;
    --keep) keep=1; shift ;;
    --results) results_dir=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
    *) die "unknown option $1 (the command goes after --)" ;;
  esac
done
(($#)) || die "usage: run.sh [options] -- <command...>"
[[ -z $net_props || $net_pair == 1 ]] || die "--net-props applies to the NICs of --net-pair"
[[ $net_link == 0 || $net_pair == 1 ]] || die "--net-link-control applies to the NICs of --net-pair"
[[ $net_ports == 2 || $net_pair == 1 ]] || die "--net-ports applies to the NICs of --net-pair"
if ((net_pair)); then
  # romfile= : no option ROM, so QEMU doesn't need ipxe-qemu's efi-virtio.rom
  for ((i = 0; i < net_ports; i++)); do
    devs+=(-netdev "hubport,id=hp$i,hubid=0"
      -device "virtio-net-pci,netdev=hp$i,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:5$i$net_props")
  done
fi

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-vm"
# The results dir must NOT be under /tmp, /run or /dev/shm: those are tmpfs in the guest, so the
# host path would not exist there to mount the share over.
if [[ -n $results_dir ]]; then
  mkdir -p "$results_dir"
  RES=$(realpath "$results_dir")
  case $RES/ in /tmp/*|/run/*|/dev/shm/*) die "--results $RES: must not be under /tmp, /run, /dev/shm" ;; esac
  rm -f "$RES/exit-code" "$RES/output" "$RES"/console.boot-failure-*.log
  keep=1
else
  mkdir -p "$CACHE/runs"
  # failed runs are kept for debugging; drop those older than a day
  find "$CACHE/runs" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  RES=$(mktemp -d "$CACHE/runs/run.XXXXXX")
fi
echo "$RES" >"$RES/hostpath"
if ((net_link)); then
  rm -f "$RES/link-request" "$RES/monitor.sock"
  extra_env+=("VDPA_TEST_NET_LINK_REQUEST=$RES/link-request")
  devs+=(-monitor "unix:$RES/monitor.sock,server=on,wait=off")
fi
machine=q35,kernel-irqchip=split
testpmd_pid=""
if ((net_mq)); then
  # vhost-user: the backend maps guest memory, so it must be a shared memfd
  devs+=(-object "memory-backend-memfd,id=mem,size=$mem,share=on")
  machine+=,memory-backend=mem
  for i in 0 1; do
    sock=$RES/vhost-user-$i.sock
    ((${#sock} < 100)) || die "--net-mq-pair: socket path too long for a unix socket: $sock"
    # vectors=0 (no MSI-X: INTx): QEMU 7.2 under TCG segfaults when a vhost-user NIC with MSI-X starts
    # (virtio_pci_set_guest_notifiers installs MSI-X vector notifiers although vhost-user turned
    # use_guest_notifier_mask off, and the unmask then takes the KVM irqfd path with no irqfds)
    devs+=(-chardev "socket,id=vu$i,path=$sock"
      -netdev "vhost-user,id=vu${i}n,chardev=vu$i,queues=$net_mq"
      -device "virtio-net-pci,netdev=vu${i}n,mq=on,vectors=0,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:6$i")
  done
  extra_env+=("VDPA_VM_NET_MQ_PAIRS=$net_mq")
fi

# The kernel and initramfs this run boots (a private copy: another checkout may run setup meanwhile).
"$HERE/setup.sh" "$RES/vm.env"
# shellcheck disable=SC1091
. "$RES/vm.env"

# ---- the command file, run by the guest's init as: chroot / sh $RES/cmd.sh
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }   # single-quote for sh
{
  echo "# generated by scripts/vm/run.sh"
  for v in $(compgen -e); do
    case $v in
      PATH|HOME|USER|LOGNAME|LANG|LC_*|TERM|TZ|NODE_*|NPM_CONFIG_*|npm_config_*|CI|DEBUG|VDPA_*)
        echo "export $v=$(q "${!v}")" ;;
    esac
  done
  for kv in "${extra_env[@]}"; do
    if [[ $kv == *=* ]]; then echo "export ${kv%%=*}=$(q "${kv#*=}")"
    else echo "export $kv=$(q "${!kv-}")"; fi
  done
  echo "export VDPA_IN_VM=1 VDPA_VM_RESULTS=$(q "$RES")"
  echo "cd $(q "$PWD") || exit 125"
  printf 'exec'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo
} >"$RES/cmd.sh"

qemu=(qemu-system-x86_64
  -accel tcg,thread=multi -cpu max
  -machine "$machine" -device intel-iommu,intremap=on  # vIOMMU first: VFIO in the guest
  -m "$mem" -smp "$smp"
  -display none -monitor none -serial stdio -no-reboot -nodefaults
  -kernel "$VMLINUZ" -initrd "$INITRD"
  -append "console=ttyS0 intel_iommu=on iommu=pt panic=-1 quiet loglevel=4 rdinit=/init$append_extra"
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap
  -virtfs "local,path=$RES,mount_tag=results,security_model=none,multidevs=remap"
  "${devs[@]}")

# link_watcher QEMU_PID : while QEMU runs, carries out the command's link requests (--net-link-control).
link_watcher() {
  local req
  while kill -0 "$1" 2>/dev/null; do
    if [[ -f $RES/link-request ]]; then
      req=$(cat "$RES/link-request"); rm -f "$RES/link-request"
      local hmp=""
      if [[ $req =~ ^hp[01]\ (on|off)$ ]]; then hmp="set_link $req"; elif [[ $req == announce ]]; then hmp=announce_self; fi
      if [[ -n $hmp ]]; then
        python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2] + "\n").encode()); time.sleep(0.3)' \
          "$RES/monitor.sock" "$hmp" || echo "vdpa-vm: $hmp failed" >&2
      else
        echo "vdpa-vm: ignoring link request '$req'" >&2
      fi
    fi
    sleep 0.2
  done
}

# start_testpmd : the vhost-user backend of --net-mq-pair (DPDK's testpmd, two vhost ports, io
# forwarding between them), listening on the sockets before QEMU connects; runs until stop_testpmd.
# At nice 19: its forwarding core polls, and the guest's vCPUs need the machine more.
TESTPMD_PMD=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_vhost.so.23.0
start_testpmd() {
  local i log=$RES/testpmd.log prefix=vdpa-vm-$$
  command -v dpdk-testpmd >/dev/null || die "--net-mq-pair needs dpdk-testpmd (apt-get install dpdk-dev; scripts/vm/setup.sh installs it)"
  [[ -f $TESTPMD_PMD ]] || die "--net-mq-pair needs DPDK's vhost PMD $TESTPMD_PMD (apt-get install librte-net-vhost23)"
  rm -f "$RES"/vhost-user-[01].sock
  nice -n 19 dpdk-testpmd -l 0-1 --no-huge -m 256 --no-pci --file-prefix="$prefix" -d "$TESTPMD_PMD" \
    --vdev "net_vhost0,iface=$RES/vhost-user-0.sock,queues=$net_mq,iommu-support=1" \
    --vdev "net_vhost1,iface=$RES/vhost-user-1.sock,queues=$net_mq,iommu-support=1" \
    -- --forward-mode=io --port-topology=paired --rxq="$net_mq" --txq="$net_mq" --no-mlockall \
    --total-num-mbufs=8192 --stats-period=60 </dev/null >"$log" 2>&1 &
  testpmd_pid=$!
  for ((i = 0; i < 600; i++)); do
    kill -0 "$testpmd_pid" 2>/dev/null || { tail -n 20 "$log" >&2; testpmd_pid=""; die "--net-mq-pair: dpdk-testpmd exited before it listened (log: $log)"; }
    [[ -S $RES/vhost-user-0.sock && -S $RES/vhost-user-1.sock ]] && grep -q 'packet forwarding - ports=2' "$log" && return 0
    sleep 0.1
  done
  tail -n 20 "$log" >&2
  stop_testpmd
  die "--net-mq-pair: dpdk-testpmd did not listen on $RES/vhost-user-{0,1}.sock within 60s (log: $log)"
}
stop_testpmd() {
  [[ -n $testpmd_pid ]] || return 0
  kill -TERM "$testpmd_pid" 2>/dev/null || true
  timeout 20 tail --pid="$testpmd_pid" -f /dev/null || kill -KILL "$testpmd_pid" 2>/dev/null || true
  wait "$testpmd_pid" 2>/dev/null || true
  testpmd_pid=""
  rm -rf "/var/run/dpdk/vdpa-vm-$$"
}
if ((net_mq)); then
  trap stop_testpmd EXIT
  trap 'exit 130' INT TERM
  start_testpmd
fi

# ---- boot
# QEMU 7.2's multi-threaded TCG now and then trips the guest kernel's int3-based code patching in early
# boot (an Oops in sched_clock_cpu while static keys are patched; about 1 boot in 10). The guest's init
# prints BOOT_MARKER just before it starts the command. A boot that fails before that ran nothing, so
# it is thrown away and the guest booted once more: a kernel panic, Oops or BUG on the console, the
# guest gone, or no marker within boot_timeout_s. Once the command started, a kernel crash is the
# run's own failure: reported as such, never retried.
BOOT_MARKER='vdpa-vm init: running command'
KERNEL_FAILURE='Kernel panic|Oops|BUG:'
# Once the command runs the console carries its output too: there only kernel (timestamped) lines count.
KERNEL_LINE='^[[:space:]]*\[ *[0-9]+\.[0-9]+\] '
LOG="$RES/console.log"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# boot_state : "started" once the marker is on the console, else the first kernel failure line before
# it, else nothing. One pass over one read of the log, so command output never counts as a boot failure.
boot_state() {
  awk -v m="$BOOT_MARKER" -v f="$KERNEL_FAILURE" '
    index($0, m) { started = 1; exit }
    fail == "" && $0 ~ f { fail = $0 }
    END { if (started) print "started"; else if (fail != "") print fail }' "$LOG" | tr -d '\r'
}

# boot ATTEMPT : one guest run. Sets qrc (timeout/qemu exit status), boot_s (seconds until the command
# started; empty if it finished between two looks), boot_took (seconds until qemu ended) and
# boot_failure (empty once the command started).
boot() {
  local attempt=$1 qpid streamer="" t_start state i
  : >"$RES/init.env"   # sourced by the guest's init before the marker
  if ((${#init_env[@]})); then printf '%s\n' "${init_env[@]}" >>"$RES/init.env"; fi
  if [[ $attempt == 1 && $panic_first_boot == 1 ]]; then echo PANIC_BEFORE_COMMAND=1 >>"$RES/init.env"; fi
  : >"$LOG"
  t_start=$(now)
  timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null >"$LOG" 2>&1 &
  qpid=$!
  if ((net_link)); then link_watcher "$qpid" & fi
  if ((verbose)); then
    tail -n +1 -f --pid="$qpid" "$LOG" >&2 &
    streamer=$!
  fi
  boot_failure="" boot_s="" state=""
  while kill -0 "$qpid" 2>/dev/null; do
    state=$(boot_state)
    if [[ $state == started ]]; then boot_s=$(since "$t_start"); break; fi
    if [[ -n $state ]]; then
      # A panic ends the guest by itself (panic=-1, -no-reboot); an Oops may leave it hanging.
      for i in $(seq 10); do
        kill -0 "$qpid" 2>/dev/null || break
        sleep 0.2
      done
      [[ $(boot_state) == started ]] && break   # it went on to start the command after all
      boot_failure="the guest kernel failed before the command started: $state"
      kill "$qpid" 2>/dev/null || true
      break
    fi
    if awk -v s="$(since "$t_start")" -v m="$boot_timeout_s" 'BEGIN{exit !(s >= m)}'; then
      boot_failure="no '$BOOT_MARKER' on the console within ${boot_timeout_s}s"
      kill "$qpid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  qrc=0
  wait "$qpid" || qrc=$?
  boot_took=$(since "$t_start")
  [[ -z $streamer ]] || wait "$streamer" || true
  if [[ -z $boot_failure ]]; then   # qemu may also have exited between two looks
    state=$(boot_state)
    if [[ $state != started ]]; then
      boot_failure="the guest stopped (qemu exit $qrc) before the command started${state:+: $state}"
    fi
  fi
}

t0=$(now)
for attempt in 1 2; do
  boot "$attempt"
  [[ -n $boot_failure ]] || break
  echo "vdpa-vm: boot $attempt failed after ${boot_took}s: $boot_failure" >&2
  cp "$LOG" "$RES/console.boot-failure-$attempt.log"
  ((qrc != 124 && qrc != 137)) || break   # the whole --timeout is spent
  [[ $attempt == 2 ]] || echo "vdpa-vm: booting once more (console of the failed boot: $RES/console.boot-failure-$attempt.log)" >&2
done
t1=$(now)
[[ -f $RES/output ]] && cat "$RES/output"
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
console_tail() { ((verbose)) || { echo "---- last console lines ($LOG):" >&2; tail -n 40 "$LOG" >&2; }; }
if [[ -n $boot_failure ]]; then
  rc=99
  echo "vdpa-vm: FAILED: the guest did not start the command after $attempt boot(s): $boot_failure; qemu exit $qrc" >&2
  console_tail
elif [[ -f $RES/exit-code ]]; then
  rc=$(cat "$RES/exit-code")
  echo "vdpa-vm: command exited $rc (boot $attempt took ${boot_s:-?}s; guest ran ${elapsed}s in all)" >&2
else
  rc=99
  why="guest wrote no exit code"
  ((qrc == 124 || qrc == 137)) && why="timeout after ${timeout_s}s"
  echo "vdpa-vm: FAILED: $why; qemu exit $qrc" >&2
  console_tail
fi
# Kernel trouble in the boot that ran the command: a panic or Oops fails the run (it is no boot flake,
# so it is never retried); other BUG: reports are shown but leave the verdict to the command.
if [[ -z $boot_failure ]]; then
  kernel_reports=$(grep -aE "$KERNEL_LINE($KERNEL_FAILURE)" "$LOG" | tr -d '\r' || true)
  if [[ -z $kernel_reports ]]; then
    :
  elif grep -qE "$KERNEL_LINE(Kernel panic|Oops)" <<<"$kernel_reports"; then
    echo "vdpa-vm: FAILED: the guest kernel crashed in the boot that ran the command (not retried):" >&2
    ((rc != 0)) || rc=98
  else
    echo "vdpa-vm: WARNING: the guest kernel reported, in the boot that ran the command:" >&2
  fi
  if [[ -n $kernel_reports ]]; then
    sed 's/^/  /' <<<"$kernel_reports" >&2
    echo "  (console: $LOG)" >&2
  fi
fi
[[ $rc == 0 ]] || keep=1
if ((keep)); then echo "vdpa-vm: results dir: $RES" >&2; else rm -rf "$RES"; fi
exit "$rc"

#!/usr/bin/env bash
# Prepare everything scripts/vm/run.sh needs to boot a Linux 6.12 guest under QEMU/TCG:
#   - host packages (qemu, busybox-static, qemu-storage-daemon, iproute2, fio, dpdk-testpmd, ...)
#   - Debian trixie's kernel + modules, fetched with a private apt config (host apt untouched)
#   - a busybox initramfs whose /init mounts the host's / (9p, read-only) and runs a command
# Idempotent; everything lives in ${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-vm. A second run only
# checks stamps and takes well under a second.
# Writes $CACHE/current.env (VMLINUZ, INITRD, KVER), and a copy to ENV_FILE when given:
#   setup.sh [ENV_FILE]
# run.sh reads its copy, so a concurrent setup from another checkout cannot swap the initramfs under it.
set -euo pipefail

# Bump KERNEL_CACHE_VERSION to force a fresh kernel download. The initramfs is keyed by a hash of
# this file, so editing /init below rebuilds it automatically.
KERNEL_CACHE_VERSION=1
ENV_OUT=${1:-}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-vm"
KDIR="$CACHE/kernel-v$KERNEL_CACHE_VERSION"
SELF_HASH=$(sha256sum "$0" | cut -c1-16)

die() { echo "vdpa-vm setup: ERROR: $*" >&2; exit 1; }
log() { echo "vdpa-vm setup: $*" >&2; }

mkdir -p "$CACHE"
# Parallel runs (e.g. several test files) must not race on the cache.
exec 9>"$CACHE/.lock"
flock 9

# Fast path: nothing to do when the stamp matches and the host tools are still there.
if [[ -f "$CACHE/current.env" ]] && grep -qx "STAMP=$SELF_HASH" "$CACHE/current.env" \
   && command -v qemu-system-x86_64 qemu-storage-daemon fio depmod cpio dpdk-testpmd >/dev/null; then
  # shellcheck disable=SC1091
  . "$CACHE/current.env"
  if [[ -f "$VMLINUZ" && -f "$INITRD" ]]; then
    [[ -z $ENV_OUT ]] || cp "$CACHE/current.env" "$ENV_OUT"
    exit 0
  fi
fi

# ---------------------------------------------------------------- host packages
# package -> a file it must provide (checked after install, so a broken package fails loudly)
declare -A PKG_FILE=(
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [qemu-system-common]=/usr/bin/qemu-storage-daemon   # bookworm ships qemu-storage-daemon here
  [busybox-static]=/bin/busybox
  [iproute2]=/sbin/vdpa
  [fio]=/usr/bin/fio
  [e2fsprogs]=/usr/sbin/debugfs                       # the host-side check of the VDUSE ext4 image
  [dpdk-dev]=/usr/bin/dpdk-testpmd                     # run.sh --net-mq-pair: the vhost-user backend
  [librte-net-vhost23]=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_vhost.so.23.0   # its vhost PMD
  [kmod]=/sbin/depmod
  [zstd]=/usr/bin/zstd
  [xz-utils]=/usr/bin/xz
  [cpio]=/usr/bin/cpio
  [gzip]=/bin/gzip
)
missing=()
for p in "${!PKG_FILE[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); re-run as root to install them"
  log "installing host packages: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
fi
for p in "${!PKG_FILE[@]}"; do
  f=${PKG_FILE[$p]}
  # merged-/usr hosts may have the file only under /usr
  [[ -e $f || -e /usr$f ]] || die "package $p is installed but $f is missing"
done
# The initramfs needs a static busybox: a dynamic one would find no libc before the 9p mount.
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
   && ldd /bin/busybox >/dev/null 2>&1; then
  die "/bin/busybox is dynamically linked; install busybox-static"
fi
# Debian: QEMU's virtio-net wants efi-virtio.rom from ipxe-qemu; run.sh passes romfile= instead.

# ---------------------------------------------------------------- guest kernel
# Private apt tree: own sources list, lists and archive cache. Of the host's apt setup only the
# sources are read, for the Debian mirror to use (apt-mirror.sh); nothing of it is written.
fetch_kernel() {
  local tmp="$KDIR.tmp" mirror
  mirror=$("$HERE/apt-mirror.sh") || die "no Debian mirror to fetch the guest kernel from (see above)"
  rm -rf "$tmp"
  mkdir -p "$tmp/apt/lists/partial" "$tmp/apt/cache/archives/partial" "$tmp/deb"
  log "fetching trixie kernel from $mirror (the host's apt sources)"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
    >"$tmp/apt/sources.list"
  local APT=(apt-get -q -o "Dir::Etc::SourceList=$tmp/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$tmp/apt/lists" -o "Dir::Cache=$tmp/apt/cache"
    -o Dir::State::status=/dev/null -o APT::Sandbox::User=root -o Debug::NoLocking=1)
  local CACHE_Q=(apt-cache -o "Dir::Etc::SourceList=$tmp/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$tmp/apt/lists" -o "Dir::Cache=$tmp/apt/cache" -o Dir::State::status=/dev/null)
  "${APT[@]}" update >&2 || die "private apt-get update (trixie) failed"
  # linux-image-amd64 is a meta package; its Depends names the real versioned image package.
  local real
  real=$("${CACHE_Q[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n $real ]] || die "could not resolve linux-image-amd64 -> linux-image-<version>-amd64"
  log "kernel package: $real"
  (cd "$tmp/deb" && "${APT[@]}" download "$real" >&2) || die "apt-get download $real failed"
  local deb
  deb=$(ls "$tmp"/deb/*.deb)
  dpkg -x "$deb" "$tmp/root" || die "dpkg -x $deb failed"
  # Trixie installs to /usr/lib/modules; the host's depmod (kmod 30) looks in <base>/lib/modules.
  [[ -e $tmp/root/lib ]] || ln -s usr/lib "$tmp/root/lib"
  local kver
  kver=$(ls "$tmp/root/lib/modules" | head -n1)
  [[ -n $kver && -f $tmp/root/boot/vmlinuz-$kver ]] || die "unexpected kernel package layout in $deb"
  depmod -b "$tmp/root" "$kver" || die "depmod failed"
  echo "$real" >"$tmp/package"
  echo "$kver" >"$tmp/kver"
  rm -rf "$tmp/apt" "$tmp/deb"   # ~70 MB of apt lists not needed any more
  rm -rf "$KDIR"
  mv "$tmp" "$KDIR"
}
[[ -f $KDIR/kver ]] || fetch_kernel
KVER=$(cat "$KDIR/kver")
MODDIR="$KDIR/root/lib/modules/$KVER"

# ---------------------------------------------------------------- initramfs
# Modules the harness needs (names as in modules.dep, '-' and '_' equivalent). Built-ins are
# skipped; dependencies are added from modules.dep and loaded first.
WANT_MODULES="virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
  9pnet 9pnet_virtio 9p netfs virtio_blk virtio_net tun
  vhost_iotlb vhost vdpa vhost_vdpa vduse vfio vfio_iommu_type1 vfio_pci_core vfio_pci
  virtio_vdpa
  crc32c_generic ext4"

build_initramfs() {
  local out="$CACHE/initramfs-$SELF_HASH.cpio.gz" st="$CACHE/initramfs.tmp"
  rm -rf "$st"
  mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,newroot,results,lib/modules}
  cp /bin/busybox "$st/bin/busybox"

  # Resolve each wanted module to its path, then depth-first over modules.dep (deps first).
  local order
  order=$(awk -v want="$WANT_MODULES" '
    function norm(p,   b) { b = p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b); gsub(/-/, "_", b); return b }
    function visit(p,   n, i, d) {
      if (p in seen) return; seen[p] = 1
      n = split(deps[p], d, " ")
      for (i = 1; i <= n; i++) visit(d[i])
      print p
    }
    FILENAME ~ /modules\.builtin$/ { builtin[norm($1)] = 1; next }
    { k = $1; sub(/:$/, "", k); deps[k] = ""; for (i = 2; i <= NF; i++) deps[k] = deps[k] " " $i; byname[norm(k)] = k }
    END {
      n = split(want, w, /[ \n\t]+/)
      for (i = 1; i <= n; i++) {
        if (w[i] == "") continue
        m = w[i]; gsub(/-/, "_", m)
        if (m in byname) visit(byname[m])
        else if (!(m in builtin)) { print "vdpa-vm setup: module not found: " m > "/dev/stderr"; bad = 1 }
      }
      exit bad
    }' "$MODDIR/modules.builtin" "$MODDIR/modules.dep") || die "kernel $KVER lacks a required module"

  : >"$st/lib/modules/order"
  local p base
  for p in $order; do
    base=${p##*/}
    case $base in
      *.ko.xz) xz -dc "$MODDIR/$p" >"$st/lib/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$MODDIR/$p" >"$st/lib/modules/${base%.zst}"; base=${base%.zst} ;;
      *.ko.gz) gzip -dc "$MODDIR/$p" >"$st/lib/modules/${base%.gz}"; base=${base%.gz} ;;
      *.ko) cp "$MODDIR/$p" "$st/lib/modules/$base" ;;
      *) die "unexpected module file $p" ;;
    esac
    echo "$base" >>"$st/lib/modules/order"
  done

  cat >"$st/init" <<'EOF'
#!/bin/busybox sh
# PID 1 of the vdpa-vm guest. Mounts the host's / (9p, ro) and runs $results/cmd.sh chrooted in it.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the initramfs; attach to it now.
exec </dev/console >/dev/console 2>&1
fail() { echo "vdpa-vm init: $*"; echo o >/proc/sysrq-trigger; sleep 5; }

for m in $(cat /lib/modules/order); do
  # vhost_vdpa must be registered before virtio_vdpa so that new vdpa devices bind to it.
  insmod /lib/modules/$m || fail "insmod $m failed"
done

O9P=trans=virtio,version=9p2000.L,msize=512000
HOST_9P_CACHE=loose
# run.sh may override the settings above (e.g. HOST_9P_CACHE) via the results share.
mount -t 9p -o $O9P,cache=none results /results || fail "mounting the results share failed"
[ -f /results/init.env ] && . /results/init.env
# cache=loose: the host root is read-only and static during a run, so caching is safe and
# makes node's many small file reads much faster.
mount -t 9p -o ro,$O9P,cache=$HOST_9P_CACHE host /newroot || fail "mounting the host root failed"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
[ -d /sys/kernel/debug ] && mount -t debugfs debugfs /newroot/sys/kernel/debug 2>/dev/null
# The results dir exists on the host, so its path exists in the read-only root: mount the
# writable share over it, giving the same path inside and outside the guest.
RDIR=$(cat /results/hostpath)
# (a virtio-9p tag can be mounted only once, hence the bind mount)
mount --bind /results "/newroot$RDIR" || fail "mounting results at $RDIR failed"
hostname vdpa-vm
# run.sh's retry test (VDPA_VM_PANIC_FIRST_BOOT): a kernel panic before the marker below.
[ "${PANIC_BEFORE_COMMAND:-0}" = 1 ] && { echo "vdpa-vm init: panicking on purpose"; echo c >/proc/sysrq-trigger; }
# run.sh's marker: from here on the command runs, and a kernel failure is the run's, not the boot's.
echo "vdpa-vm init: running command"
set -o pipefail
chroot /newroot /bin/sh "$RDIR/cmd.sh" </dev/null 2>&1 | tee /results/output
echo $? >/results/exit-code.tmp
mv /results/exit-code.tmp /results/exit-code
sync
umount "/newroot$RDIR" 2>/dev/null
umount /results 2>/dev/null
echo o >/proc/sysrq-trigger
sleep 10
EOF
  chmod 755 "$st/init"
  (cd "$st" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1 >"$out.tmp") \
    || die "building the initramfs failed"
  mv "$out.tmp" "$out"
  rm -rf "$st"
  # Drop other initramfs versions, but not while another checkout (other hash) may still boot its own.
  find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "${out##*/}" -mmin +1440 -delete
  INITRD=$out
}
INITRD="$CACHE/initramfs-$SELF_HASH.cpio.gz"
[[ -f $INITRD ]] || build_initramfs

cat >"$CACHE/current.env.tmp" <<EOF
STAMP=$SELF_HASH
KVER=$KVER
KPACKAGE=$(cat "$KDIR/package")
VMLINUZ=$KDIR/root/boot/vmlinuz-$KVER
INITRD=$INITRD
EOF
mv "$CACHE/current.env.tmp" "$CACHE/current.env"
[[ -z $ENV_OUT ]] || cp "$CACHE/current.env" "$ENV_OUT"
log "ready: kernel $KVER, initramfs $INITRD"

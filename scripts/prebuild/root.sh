#!/usr/bin/env bash
# The Debian bullseye build root the prebuilds are compiled in (glibc 2.31, g++ 10, and the aarch64 cross
# compiler), and an arm64 sysroot holding bullseye's nodejs:arm64 for load tests under qemu-aarch64-static.
# Bullseye's kernel headers (5.10) predate the UAPI the addon compiles against (vhost IOTLB ASIDs, VDUSE
# era vdpa netlink), so the build root also holds bookworm's linux-libc-dev for amd64 and arm64 under
# /opt/uapi-ARCH: kernel headers only describe the kernel ABI and add no glibc or libstdc++ dependency.
# Both are made once with debootstrap from the Debian archive the host's apt sources name
# (scripts/vm/apt-mirror.sh) and kept under the cache directory, keyed by what is installed into them.
#
#   root.sh name           print the build root's directory name (its key), made or not
#   root.sh path           print the build root's directory (made first when missing; needs root)
#   root.sh sysroot        print the arm64 sysroot's directory (made first when missing; needs root)
#   root.sh run SRC WORK CMD…
#                          run CMD in the build root with SRC bind-mounted read-only at /src, WORK at
#                          /work, the host's node at /usr/local/bin/node, its headers at /opt/node (root)
#
# VDPA_PREBUILD_CACHE overrides the cache directory (default ~/.cache/vdpa-prebuild).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VDPA_PREBUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-prebuild}

suite=bullseye
root_packages=(g++ make python3 g++-aarch64-linux-gnu binutils)
uapi_suite=bookworm
sysroot_packages=(nodejs)
# Bump when the way a root is made changes, so old roots are not reused.
layout=2

die() { echo "prebuild: ERROR: $*" >&2; exit 1; }

key() { printf '%s\n' "$layout" "$suite" "$@" | sha256sum | cut -c1-12; }
root_dir="$cache/root-$suite-amd64-$(key "${root_packages[@]}" "uapi:$uapi_suite")"
sysroot_dir="$cache/sysroot-$suite-arm64-$(key "${sysroot_packages[@]}")"

need_root() {
  [[ $(id -u) == 0 ]] || die "$1 needs root (debootstrap and chroot). Run it as root (sudo npm run" \
    "prebuild:all), or pack without prebuilds: VDPA_SKIP_PREBUILD=1 npm pack (installs then compile)."
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return
  echo "prebuild: installing debootstrap" >&2
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } \
    || die "debootstrap is missing and apt-get could not install it"
}

# debootstrap into DIR.tmp, then rename: an interrupted run leaves no half-made root behind to reuse.
bootstrap() {
  local dir=$1 what=$2
  shift 2
  [[ -f $dir/.complete ]] && return
  need_root "making the $what"
  ensure_debootstrap
  local mirror
  mirror=$(bash "$here/../vm/apt-mirror.sh")
  rm -rf "$dir.tmp"
  mkdir -p "$cache"
  echo "prebuild: debootstrap $suite ($what) from $mirror into $dir" >&2
  local start=$SECONDS
  debootstrap --variant=minbase "$@" "$suite" "$dir.tmp" "$mirror" >"$dir.log" 2>&1 \
    || die "debootstrap failed; its log: $dir.log"
  echo "prebuild: $what made in $((SECONDS - start)) s" >&2
}

make_root() {
  bootstrap "$root_dir" "build root" --include="$(IFS=,; echo "${root_packages[*]}")"
  [[ -f $root_dir/.complete ]] && return
  local tmp=$root_dir.tmp arch
  echo "deb $(bash "$here/../vm/apt-mirror.sh") $uapi_suite main" >"$tmp/etc/apt/sources.list.d/uapi.list"
  in_chroot "$tmp" bash -euc "dpkg --add-architecture arm64 && apt-get update -qq && cd /tmp &&
    apt-get download -qq linux-libc-dev:amd64/$uapi_suite linux-libc-dev:arm64/$uapi_suite" \
    >>"$root_dir.log" 2>&1 || die "could not download $uapi_suite's linux-libc-dev; log: $root_dir.log"
  for arch in amd64 arm64; do
    dpkg-deb -x "$tmp"/tmp/linux-libc-dev_*_"$arch".deb "$tmp/opt/uapi-$arch"
  done
  rm -rf "$tmp"/tmp/*.deb "$tmp/etc/apt/sources.list.d/uapi.list" "$tmp"/var/lib/apt/lists/* \
    "$tmp"/var/cache/apt/archives/*.deb
  touch "$root_dir.tmp/.complete"
  rm -rf "$root_dir"
  mv "$root_dir.tmp" "$root_dir"
}

# --foreign only unpacks the base system; the --include'd packages are downloaded but left for a second
# stage that would run arm64 code. Unpacking them with dpkg-deb is all a load test needs.
make_sysroot() {
  bootstrap "$sysroot_dir" "arm64 sysroot" --foreign --arch=arm64 \
    --include="$(IFS=,; echo "${sysroot_packages[*]}")"
  [[ -f $sysroot_dir/.complete ]] && return
  local deb
  for deb in "$sysroot_dir.tmp"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$sysroot_dir.tmp"
  done
  rm -f "$sysroot_dir.tmp"/var/cache/apt/archives/*.deb
  [[ -x $sysroot_dir.tmp/usr/bin/nodejs || -x $sysroot_dir.tmp/usr/bin/node ]] \
    || die "the arm64 sysroot has no node binary"
  touch "$sysroot_dir.tmp/.complete"
  rm -rf "$sysroot_dir"
  mv "$sysroot_dir.tmp" "$sysroot_dir"
}

# Where node-gyp finds the headers of the host's node: npm's nodedir setting, else next to the binary.
node_headers() {
  local dir
  dir=$(npm config get nodedir 2>/dev/null || true)
  [[ -n $dir && $dir != undefined && $dir != null && -f $dir/include/node/node_api.h ]] && { echo "$dir"; return; }
  dir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  [[ -f $dir/include/node/node_api.h ]] && { echo "$dir"; return; }
  die "no node headers (include/node/node_api.h) under npm's nodedir or $dir"
}

# Runs a command chrooted into DIR with /proc and /dev, in a private mount namespace: the mounts vanish
# with the command, however it ends. Mounts given as "-b SRC DEST" or "-r SRC DEST" (read-only) come first.
in_chroot() {
  local dir=$1
  shift
  unshare --mount --propagation private -- bash -euc '
    dir=$1
    shift
    mount -t proc proc "$dir/proc"
    mount --bind /dev "$dir/dev"
    while [[ $1 == -[br] ]]; do
      [[ -d $2 ]] && mkdir -p "$dir/$3" || { mkdir -p "$(dirname "$dir/$3")"; touch "$dir/$3"; }
      mount --bind "$2" "$dir/$3"
      [[ $1 == -r ]] && mount -o remount,bind,ro "$dir/$3"
      shift 3
    done
    exec chroot "$dir" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"
  ' bash "$dir" "$@"
}

run_in_root() {
  local src=$1 work=$2
  shift 2
  need_root "running in the build root"
  make_root
  local node headers
  node=$(readlink -f "$(command -v node)")
  headers=$(node_headers)
  in_chroot "$root_dir" -r "$src" /src -b "$work" /work -r "$node" /usr/local/bin/node \
    -r "$headers/include/node" /opt/node/include/node /usr/bin/env npm_config_nodedir=/opt/node "$@"
}

case ${1-} in
  name) basename "$root_dir" ;;
  path) make_root; echo "$root_dir" ;;
  sysroot) make_sysroot; echo "$sysroot_dir" ;;
  run) shift; (($# >= 3)) || die "usage: root.sh run SRC WORK CMD..."; run_in_root "$@" ;;
  *) echo "usage: root.sh name | path | sysroot | run SRC WORK CMD..." >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# npm run prebuild:all: the prebuilds the package ships, prebuilds/linux-x64/vdpa.glibc.node and
# prebuilds/linux-arm64/vdpa.glibc.node (prebuildify --napi --strip --tag-libc), compiled in the Debian
# bullseye build root of root.sh so they load on glibc 2.31 and newer. Each is checked for its symbol
# versions (check-symbols.sh) and load-tested on bullseye's glibc: x64 by the host's node inside the build
# root, arm64 by bullseye's nodejs:arm64 under qemu-aarch64-static.
#
# Outputs are cached under the cache directory, keyed by the native sources, binding.gyp, node-addon-api,
# the build root and these scripts: a repeat run with the same inputs copies them and needs no root.
# Otherwise it needs root (a cold run also makes the build root and the arm64 sysroot).
#
# VDPA_PREBUILD_ARCHS   archs to build (default "x64 arm64")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VDPA_PREBUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vdpa-prebuild}
archs=${VDPA_PREBUILD_ARCHS:-x64 arm64}
cd "$repo"

die() { echo "prebuild: ERROR: $*" >&2; exit 1; }
start=$SECONDS

inputs_key() {
  {
    echo "archs: $archs"
    bash "$here/root.sh" name
    sha256sum binding.gyp "$here"/{build,root,check-symbols}.sh node_modules/node-addon-api/package.json
    find native -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

out="$cache/out-$(inputs_key)"
if [[ ! -f $out/.complete ]]; then
  [[ $(id -u) == 0 ]] || die "no prebuilds for these sources in $cache, and building them needs root" \
    "(debootstrap and chroot). Run npm pack or npm run prebuild:all as root (a later run with the same" \
    "sources and VDPA_PREBUILD_CACHE set to root's cache needs no root), or pack without prebuilds:" \
    "VDPA_SKIP_PREBUILD=1 npm pack (installs then compile from source)."
  root=$(bash "$here/root.sh" path)
fi

if [[ ! -f $out/.complete ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/vdpa-prebuild.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cp -a binding.gyp package.json native "$work/"
  ln -s /src/node_modules "$work/node_modules"
  for arch in $archs; do
    case $arch in
      x64) t=x86_64-linux-gnu uapi=/opt/uapi-amd64 cross=() ;;
      arm64) t=aarch64-linux-gnu uapi=/opt/uapi-arm64 cross=(CC=$t-gcc CXX=$t-g++ LINK=$t-g++ AR=$t-ar) ;;
      *) die "no cross compiler for arch $arch" ;;
    esac
    echo "prebuild: compiling linux-$arch in $(basename "$root")" >&2
    t0=$SECONDS
    flags="-isystem $uapi/usr/include -isystem $uapi/usr/include/$t"
    bash "$here/root.sh" run "$repo" "$work" /usr/bin/env "${cross[@]}" CFLAGS="$flags" CXXFLAGS="$flags" JOBS=max \
      bash -c 'cd /work && node node_modules/prebuildify/bin.js --napi --strip --tag-libc \
        --arch "$1" --strip-bin "$2" >/work/build-$1.log 2>&1 || { cat /work/build-$1.log; exit 1; }' \
      bash "$arch" "$t-strip"
    echo "prebuild: linux-$arch compiled in $((SECONDS - t0)) s" >&2
    bash "$here/root.sh" run "$repo" "$work" bash /src/scripts/prebuild/check-symbols.sh \
      "/work/prebuilds/linux-$arch/vdpa.glibc.node" "$arch" "$t-objdump"
  done
  # Load tests on bullseye's glibc 2.31: the addon's exports are its N-API functions and classes.
  probe='const m = require(process.argv[1]); const n = Object.keys(m).length;
    if (!n || typeof m[Object.keys(m)[0]] !== "function") throw new Error("no exports");
    console.log("prebuild: loaded " + process.argv[1] + " (node " + process.version + ", " +
      process.arch + "): " + n + " exports");'
  for arch in $archs; do
    case $arch in
      x64) bash "$here/root.sh" run "$repo" "$work" node -e "$probe" /work/prebuilds/linux-x64/vdpa.glibc.node ;;
      arm64)
        sysroot=$(bash "$here/root.sh" sysroot)
        command -v qemu-aarch64-static >/dev/null \
          || apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null \
          || die "qemu-aarch64-static is missing and apt-get could not install qemu-user-static"
        qemu-aarch64-static -L "$sysroot" "$sysroot/usr/bin/node" -e "$probe" \
          "$work/prebuilds/linux-arm64/vdpa.glibc.node"
        ;;
    esac
  done
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  cp -a "$work/prebuilds" "$out.tmp/"
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
else
  echo "prebuild: reusing $out (same sources, build root and scripts)" >&2
  touch "$out"
fi
# Outputs unused for 30 days go (each is about 1 MiB; every change to the native sources makes one).
find "$cache" -maxdepth 1 -name 'out-*' ! -name "$(basename "$out")" -type d \
  ! -newermt '30 days ago' -exec rm -rf {} + 2>/dev/null || true

rm -rf prebuilds
cp -a "$out/prebuilds" prebuilds
find prebuilds -name '*.node' -printf 'prebuild: %p (%s bytes)\n'
echo "prebuild: done in $((SECONDS - start)) s" >&2

#!/usr/bin/env bash
# Checks apt-mirror.sh against apt source trees made up here (one-line and deb822 entries, disabled
# ones, deb-src, -security, foreign archives, no sources at all). Needs apt-get; no network.
#
#   scripts/vm/test-apt-mirror.sh
set -uo pipefail

MIRROR=$(cd "$(dirname "$0")" && pwd)/apt-mirror.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"')
codename=${codename:-stable}
failed=0

# tree NAME : an empty apt etc dir; files are written into it by the caller
tree() { mkdir -p "$T/$1/sources.list.d"; }
# expect NAME WANT : WANT is the URL apt-mirror.sh must print, or "error" for a failure with a message
expect() {
  local got rc err
  got=$("$MIRROR" "$T/$1" 2>"$T/err"); rc=$?
  err=$(cat "$T/err")
  if [[ $2 == error ]]; then
    [[ $rc == 1 && -z $got && $err == *"name no Debian archive"* ]] && { echo "ok   $1: error"; return; }
  else
    [[ $rc == 0 && $got == "$2" ]] && { echo "ok   $1: $got"; return; }
  fi
  echo "FAIL $1: want $2, got '$got' (exit $rc) $err"
  failed=1
}

tree one-line
cat >"$T/one-line/sources.list" <<EOF
# deb http://commented.invalid/debian $codename main
deb-src http://source.invalid/debian $codename main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://one-line.invalid/debian/ $codename main
EOF
expect one-line http://one-line.invalid/debian

tree deb822
cat >"$T/deb822/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://security.invalid/debian-security
Suites: $codename-security
Components: main

Types: deb
URIs: http://disabled.invalid/debian
Suites: $codename
Components: main
Enabled: no

Types: deb
URIs: https://deb822.invalid/debian/ https://second.invalid/debian
Suites: $codename-updates $codename
Components: main
EOF
expect deb822 https://deb822.invalid/debian

tree alias
echo "deb http://alias.invalid/debian unstable main" >"$T/alias/sources.list.d/sid.list"
expect alias http://alias.invalid/debian

tree foreign-only
echo "deb http://security.invalid/debian-security $codename-security main" >"$T/foreign-only/sources.list"
echo "deb https://vendor.invalid/apt vendor-$codename main" >"$T/foreign-only/sources.list.d/vendor.list"
echo "deb http://ignored.invalid/debian $codename main" >"$T/foreign-only/sources.list.d/off.list.disabled"
printf 'Types: deb\nURIs: https://node.invalid/node_20.x\nSuites: nodistro\nComponents: main\n' \
  >"$T/foreign-only/sources.list.d/node.sources"
expect foreign-only error

tree empty
expect empty error

exit $failed

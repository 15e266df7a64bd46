#!/usr/bin/env bash
# Checks that an addon needs no newer glibc or libstdc++ than Debian bullseye has (GLIBC_2.31,
# GLIBCXX_3.4.28, CXXABI_1.3.12: Debian 11, Ubuntu 20.04 and later), from the symbol versions its
# dynamic symbol table asks for (objdump -T), and that it is built for the expected machine.
#
#   check-symbols.sh FILE.node ARCH [OBJDUMP]    ARCH: x64 or arm64; OBJDUMP defaults to objdump
set -euo pipefail
file=$1 arch=$2 objdump=${3:-objdump}
declare -A limit=([GLIBC]=2.31 [GLIBCXX]=3.4.28 [CXXABI]=1.3.12)
declare -A format=([x64]=elf64-x86-64 [arm64]=elf64-littleaarch64)

fail() { echo "check-symbols: $file: $*" >&2; exit 1; }
[[ -n ${format[$arch]-} ]] || fail "unknown arch $arch"
"$objdump" -f "$file" | grep -q "file format ${format[$arch]}" || fail "not ${format[$arch]}"

symbols=$("$objdump" -T "$file") || fail "$objdump -T failed"
report=()
for lib in GLIBC GLIBCXX CXXABI; do
  newest=$(grep -oE "\b${lib}_[0-9]+(\.[0-9]+)*\b" <<<"$symbols" | sed "s/^${lib}_//" | sort -uV | tail -1)
  [[ -z $newest ]] && continue
  top=$(printf '%s\n' "$newest" "${limit[$lib]}" | sort -V | tail -1)
  [[ $top == "${limit[$lib]}" ]] || fail "needs ${lib}_$newest, newer than bullseye's ${lib}_${limit[$lib]}"
  report+=("${lib}_$newest <= ${limit[$lib]}")
done
echo "check-symbols: $file ($arch): ${report[*]}"

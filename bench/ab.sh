#!/usr/bin/env bash
# Compares builds side by side: runs bench/cost.js from each package directory in turn, REPS rounds,
# and prints each run's JSON line and the per-key medians. Usage: bench/ab.sh REPS DIR[:POLL]... (each
# DIR a package root with dist/ and build/Release/ built, e.g. a snapshot made with
# `bench/ab.sh --snapshot DIR`; POLL = BlkOptions.pollMicros for that column, default 0).
set -euo pipefail
if [ "${1:-}" = "--snapshot" ]; then
  dest=$2
  root=$(cd "$(dirname "$0")/.." && pwd)
  mkdir -p "$dest/build/Release/testing"
  cp -r "$root/dist" "$root/package.json" "$dest/"
  cp "$root/build/Release/vdpa.node" "$dest/build/Release/"
  cp "$root/build/Release/testing/vdpa_testing.node" "$dest/build/Release/testing/"
  ln -sfn "$root/node_modules" "$dest/node_modules"
  exit 0
fi
reps=$1
shift
out=$(mktemp)
for ((r = 0; r < reps; r++)); do
  for d in "$@"; do
    poll=0
    dir=$d
    if [[ $d == *:* ]]; then
      poll=${d##*:}
      dir=${d%:*}
    fi
    line=$(node --expose-gc "$dir/dist/bench/cost.js" 200000 "$poll")
    echo "$d $line" | tee -a "$out"
  done
done
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
const by = new Map();
for (const l of lines) { const i = l.indexOf(" "); const d = l.slice(0, i); const o = JSON.parse(l.slice(i + 1));
  if (!by.has(d)) by.set(d, {}); for (const [k, v] of Object.entries(o)) (by.get(d)[k] ??= []).push(v); }
const med = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const keys = Object.keys([...by.values()][0]);
console.log(["key", ...by.keys()].join("\t"));
for (const k of keys) console.log([k, ...[...by.values()].map((o) => med(o[k]))].join("\t"));
' "$out"
rm -f "$out"

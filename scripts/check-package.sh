#!/usr/bin/env bash
# CI: the packed tarball as a user gets it. npm pack (prepack builds dist/lib and the prebuilds), then:
# - the tarball ships LICENSE, CHANGELOG.md, a tagged prebuild per platform (symbol versions checked in
#   the build root), every file its source maps name, and no @internal declaration;
# - installed into a new project with no compiler, make or python3 on PATH, no addon is compiled, the
#   prebuild is what loads, require('vdpa') and import('vdpa') give the same exports, deep imports fail,
#   the CLI (vdpa-node) prints its usage and reports on mock:blk, and mock:blk does a write/read round
#   trip; without the prebuilds the same install fails with a message naming what to install; the
#   installed project works on bullseye's glibc;
# - a TypeScript project with only vdpa installed type-checks its declarations (skipLibCheck: false),
#   as CommonJS and as an ES module.
# Runs as root (as CI does): the build root makes the prebuilds and its objdump checks them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vdpa-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-package: FAIL: $*" >&2; exit 1; }
ok() { echo "check-package: ok: $*"; }

cd "$repo"
t0=$SECONDS
tarball=$(npm pack --silent --pack-destination "$tmp" | tail -1)
tarball="$tmp/$tarball"
[[ -f $tarball ]] || fail "npm pack produced no tarball"
ok "npm pack: $(basename "$tarball") ($(stat -c %s "$tarball") bytes) in $((SECONDS - t0)) s"

mkdir "$tmp/unpacked"
tar -xzf "$tarball" -C "$tmp/unpacked"
pkg="$tmp/unpacked/package"
for f in package.json README.md LICENSE CHANGELOG.md scripts/install.js binding.gyp \
  prebuilds/linux-x64/vdpa.glibc.node prebuilds/linux-arm64/vdpa.glibc.node; do
  [[ -f $pkg/$f ]] || fail "the tarball has no $f"
done
for d in test bench build scripts/vm dist/test dist/bench; do
  [[ ! -e $pkg/$d ]] || fail "the tarball ships $d"
done
ok "tarball: LICENSE, CHANGELOG.md, prebuilds for linux-x64 and linux-arm64; no tests or build output"
# The shipped binaries, checked with the build root's binutils (objdump for both machines).
cp scripts/prebuild/check-symbols.sh "$tmp/check-symbols.sh"
for arch in x64 arm64; do
  objdump=$([[ $arch == x64 ]] && echo x86_64-linux-gnu-objdump || echo aarch64-linux-gnu-objdump)
  bash scripts/prebuild/root.sh run "$pkg" "$tmp" bash /work/check-symbols.sh \
    "/src/prebuilds/linux-$arch/vdpa.glibc.node" "$arch" "$objdump"
done

node - "$pkg" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const pkg = process.argv[2];
const files = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    e.isDirectory() ? walk(p) : files.push(p);
  }
})(pkg);
let maps = 0;
for (const map of files.filter((f) => f.endsWith('.map'))) {
  for (const source of JSON.parse(fs.readFileSync(map, 'utf8')).sources) {
    const target = path.resolve(path.dirname(map), source);
    if (!fs.existsSync(target)) throw new Error(`${path.relative(pkg, map)} names ${source}, not in the tarball`);
  }
  maps++;
}
const dts = files.filter((f) => f.endsWith('.d.ts') && f.includes(`${path.sep}dist${path.sep}`));
for (const f of dts) {
  if (fs.readFileSync(f, 'utf8').includes('@internal')) throw new Error(`${path.relative(pkg, f)} ships an @internal declaration`);
}
if (!dts.length) throw new Error('no .d.ts in dist/');
console.log(`check-package: ok: ${maps} source maps name only shipped files; ${dts.length} .d.ts without @internal`);
EOF

# A PATH holding node, npm and the basic utilities only: no compiler, make or python3.
bin="$tmp/bin"
mkdir "$bin"
node_bin=$(readlink -f "$(command -v node)")
npm_cli=$(readlink -f "$(command -v npm)")
ln -s "$node_bin" "$bin/node"
ln -s "$npm_cli" "$bin/npm"
for tool in sh bash env cat cp mv rm ln ls mkdir rmdir chmod touch dirname basename readlink realpath \
  uname id head tail tr sed grep sort mktemp tar gzip true false test printf; do
  p=$(command -v "$tool" || true)
  [[ -n $p ]] && ln -s "$p" "$bin/$tool"
done
for tool in cc c++ gcc g++ clang clang++ make python3 python node-gyp; do
  if PATH=$bin command -v "$tool" >/dev/null; then fail "$tool is on the restricted PATH"; fi
done

app="$tmp/app"
mkdir "$app"
cd "$app"
printf '{ "name": "app", "version": "1.0.0", "private": true }\n' >package.json
t0=$SECONDS
PATH=$bin npm install --no-audit --no-fund --loglevel=error "$tarball" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "npm install of the tarball without a compiler"; }
[[ ! -e node_modules/vdpa/build ]] || fail "the install compiled the addon (node_modules/vdpa/build exists)"
ok "installed without a compiler on PATH in $((SECONDS - t0)) s"

PATH=$bin node - <<'EOF'
const assert = require('node:assert');
const path = require('node:path');
(async () => {
  const dir = path.dirname(require.resolve('vdpa/package.json'));
  const loaded = require('node-gyp-build').resolve(dir);
  assert.match(path.relative(dir, loaded), /^prebuilds[/\\]linux-[a-z0-9]+[/\\]vdpa\.glibc\.node$/, loaded);
  const cjs = require('vdpa');
  const esm = await import('vdpa');
  const names = (m) => Object.keys(m).filter((k) => k !== 'default' && k !== '__esModule' && k !== 'module.exports').sort();
  assert.ok(names(cjs).length > 0, 'require("vdpa") has no exports');
  assert.deepStrictEqual(names(esm), names(cjs), 'import("vdpa") and require("vdpa") differ');
  for (const deep of ['vdpa/dist/lib/native', 'vdpa/dist/lib/native.js', 'vdpa/dist/lib/index.js', 'vdpa/lib/index.ts',
    'vdpa/prebuilds/linux-x64/vdpa.glibc.node', 'vdpa/scripts/install.js']) {
    assert.throws(() => require(deep), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' }, `require('${deep}')`);
    await assert.rejects(import(deep), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' }, `import('${deep}')`);
  }
  const blk = await cjs.openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
  try {
    const out = new Uint8Array(8192).map((_, i) => (i * 7 + 3) & 0xff);
    const back = new Uint8Array(8192);
    await blk.write(4096, out);
    await blk.read(4096, back);
    assert.deepStrictEqual(back, out, 'mock:blk read back other bytes than it was written');
  } finally {
    await blk.close();
  }
  console.log(`check-package: ok: ${path.relative(dir, loaded)} loaded; require and import give ${names(cjs).length} ` +
    'exports; deep imports fail with ERR_PACKAGE_PATH_NOT_EXPORTED; mock:blk write/read round trip');
})().catch((err) => { console.error(err); process.exit(1); });
EOF

# The same installed project on bullseye's glibc 2.31 and libstdc++ (the build root, the host's node).
bash "$repo/scripts/prebuild/root.sh" run "$app" "$tmp" node -e '
  const vdpa = require("/src/node_modules/vdpa");
  vdpa.openBlk("mock:blk", { mock: { capacity: 1 << 20 } }).then(async (blk) => {
    const out = new Uint8Array(4096).fill(0x5a), back = new Uint8Array(4096);
    await blk.write(0, out);
    await blk.read(0, back);
    await blk.close();
    if (!back.every((b) => b === 0x5a)) throw new Error("mock:blk read back other bytes");
    console.log("check-package: ok: mock:blk round trip on glibc " + process.report.getReport().header.glibcVersionRuntime);
  });' || fail "the installed package does not work in the bullseye root"

# The CLI as installed: `vdpa-node`, not `vdpa` (iproute2's /usr/sbin/vdpa keeps its name).
[[ ! -e node_modules/.bin/vdpa ]] || fail "the package installs a bin named vdpa (it would shadow iproute2's vdpa)"
usage=$(PATH=$bin node_modules/.bin/vdpa-node --help) || fail "vdpa-node --help exited $?"
grep -q '^usage: vdpa-node' <<<"$usage" || fail "vdpa-node --help printed no usage: $usage"
info=$(PATH=$bin node_modules/.bin/vdpa-node info mock:blk --json) || fail "vdpa-node info mock:blk --json failed"
PATH=$bin node -e 'if (JSON.parse(process.argv[1]).deviceType !== "blk") process.exit(1)' "$info" \
  || fail "vdpa-node info mock:blk --json printed: $info"
ok "node_modules/.bin/vdpa-node: --help exits 0 with its usage on stdout; info mock:blk --json parses"

# With no prebuild that fits and no compiler, the install fails saying what to install.
mkdir -p "$tmp/bare" "$tmp/app-bare"
cp -a "$pkg" "$tmp/bare/package"
rm -rf "$tmp/bare/package/prebuilds"
tar -czf "$tmp/bare.tgz" -C "$tmp/bare" package
(
  cd "$tmp/app-bare"
  printf '{ "name": "app-bare", "version": "1.0.0", "private": true }\n' >package.json
  ! PATH=$bin npm install --no-audit --no-fund --loglevel=error "$tmp/bare.tgz" >"$tmp/bare.log" 2>&1
) || fail "a package without prebuilds installed with no compiler on PATH"
grep -q 'no prebuild for linux-' "$tmp/bare.log" && grep -q 'missing a C++ compiler' "$tmp/bare.log" \
  && grep -q 'apt-get install g++ make python3' "$tmp/bare.log" \
  || { cat "$tmp/bare.log"; fail "the failed install does not say what to install"; }
ok "with no prebuild and no compiler the install fails naming what to install"

# Types: strict, skipLibCheck off; with the default "types" and with "types": [] (no globals but what vdpa
# itself pulls in). The consumer installed nothing but vdpa.
tsc="$repo/node_modules/typescript/bin/tsc"
printf 'import type * as vdpa from "vdpa";\nexport type Api = typeof vdpa;\n' >cjs.ts
printf 'import * as vdpa from "vdpa";\nexport const api: typeof vdpa = vdpa;\n' >esm.mts
for types in '' '"types": [],'; do
  cat >tsconfig.json <<EOF
{
  "compilerOptions": {
    "strict": true, "skipLibCheck": false, "noEmit": true, $types
    "module": "node16", "moduleResolution": "node16", "target": "ES2022"
  },
  "files": ["cjs.ts", "esm.mts"]
}
EOF
  PATH=$bin node "$tsc" -p . || fail "a TypeScript consumer of vdpa (${types:-default types}) does not compile"
done
ok "a TypeScript consumer (CommonJS and ESM, skipLibCheck: false, default types and types: []) compiles"
echo "check-package: all checks passed"

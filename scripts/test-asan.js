#!/usr/bin/env node
// npm run test:asan — builds both addons (vdpa.node and the testing addon) with AddressSanitizer +
// UndefinedBehaviorSanitizer into build-asan/ and runs the whole test suite against them. Node itself is not instrumented, so the ASan
// runtime is preloaded; leak checking is off (Node's own allocations would drown the report).
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'build-asan');
const flags = '-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g -O1';

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    console.error(`test:asan: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

// A private source tree so the sanitizer build never touches build/ (the normal addon).
fs.mkdirSync(out, { recursive: true });
for (const name of ['binding.gyp', 'native', 'node_modules']) {
  const link = path.join(out, name);
  if (!fs.existsSync(link)) fs.symlinkSync(path.join(root, name), link);
}
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
// Build against the running Node's own headers when it has them (no header download needed).
const prefix = path.resolve(path.dirname(process.execPath), '..');
const nodedir = fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
run(process.execPath, [nodeGyp, 'rebuild', '-j', '2', ...nodedir], {
  cwd: out,
  env: { ...process.env, CXXFLAGS: flags, CFLAGS: flags, LDFLAGS: '-fsanitize=address,undefined' },
});
const addon = path.join(out, 'build', 'Release', 'vdpa.node');
const testingAddon = path.join(out, 'build', 'Release', 'testing', 'vdpa_testing.node');
for (const file of [addon, testingAddon]) {
  const nm = execFileSync('nm', ['-D', file], { encoding: 'utf8' });
  if (!nm.includes('__asan_')) {
    console.error(`test:asan: ${file} was built without AddressSanitizer`);
    process.exit(1);
  }
}

run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root });
const libasan = execFileSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
const libubsan = execFileSync('g++', ['-print-file-name=libubsan.so'], { encoding: 'utf8' }).trim();
run(process.execPath, [path.join(__dirname, 'run-tests.js')], {
  cwd: root,
  env: {
    ...process.env,
    VDPA_NATIVE_PATH: addon,
    VDPA_TESTING_NATIVE_PATH: testingAddon,
    LD_PRELOAD: `${libasan} ${libubsan}`,
    ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:halt_on_error=1',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  },
});
console.log('test:asan: suite passed under AddressSanitizer + UndefinedBehaviorSanitizer');

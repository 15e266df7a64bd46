#!/usr/bin/env node
// Fails when any C++ file under native/ differs from what clang-format (the .clang-format style) makes of it.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const files = execFileSync('git', ['ls-files', 'native/*.h', 'native/*.cc'], { cwd: root, encoding: 'utf8' })
  .split('\n')
  .filter(Boolean);
const r = spawnSync('clang-format', ['--dry-run', '--Werror', ...files], { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error('clang-format is not installed (apt-get install clang-format)');
  process.exit(1);
}
if (r.status !== 0) {
  console.error('C++ formatting differs: run `clang-format -i native/**/*.{h,cc}`');
  process.exit(r.status);
}
console.log(`clang-format: ${files.length} files clean`);

#!/usr/bin/env node
// Runs node's test runner on every compiled *.test.js under dist/test (helpers are not test files).
// Extra arguments are directories under dist/test to restrict the run to (e.g. `ring`).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const base = path.join(root, 'dist', 'test');
const dirs = process.argv.length > 2 ? process.argv.slice(2).map((d) => path.join(base, d)) : [base];
const files = [];
const walk = (dir) => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js')) files.push(p);
  }
};
dirs.forEach(walk);
if (files.length === 0) {
  console.error(`no test files under ${dirs.join(', ')}: run tsc first`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--expose-gc', '--test', '--test-reporter=spec', ...files.sort()], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);

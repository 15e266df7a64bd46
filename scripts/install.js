#!/usr/bin/env node
// npm's install step: use the prebuilt addon that fits this machine (prebuilds/, see scripts/prebuild),
// else compile it with node-gyp. When neither can work, say what is missing and how to install it
// instead of leaving the user with node-gyp's stack trace.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuildPlatforms = 'linux-x64 and linux-arm64 with glibc 2.31 or newer (Debian 11, Ubuntu 20.04 and later)';

function libcName() {
  const header = process.report.getReport().header;
  return header.glibcVersionRuntime ? `glibc ${header.glibcVersionRuntime}` : 'musl or another libc (not glibc)';
}

// The prebuild node-gyp-build picks for this machine, and whether it loads. node-gyp-build prefers a
// local build/ over prebuilds/, as the addon's loader does at run time.
function tryPrebuild() {
  if (/^(true|1)$/.test(process.env.npm_config_build_from_source ?? '')) {
    return { reason: 'building from source was asked for (--build-from-source)' };
  }
  let file;
  try {
    file = require('node-gyp-build').resolve(root);
  } catch {
    return { reason: `no prebuild for ${process.platform}-${process.arch}` };
  }
  try {
    require(file);
    return { file };
  } catch (err) {
    return { reason: `${path.relative(root, file)} does not load here: ${String(err.message).split('\n')[0]}` };
  }
}

function onPath(command) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir || '.', command), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function missingTools() {
  const compilers = process.env.CXX ? [process.env.CXX.split(' ')[0]] : ['c++', 'g++', 'clang++'];
  const missing = [];
  if (!compilers.some(onPath))
    missing.push(process.env.CXX ? `${compilers[0]} (from CXX)` : 'a C++ compiler (g++ or clang++)');
  if (!onPath('make')) missing.push('make');
  if (!onPath('python3')) missing.push('python3');
  return missing;
}

function explain(reason, problem) {
  console.error(
    [
      `vdpa: cannot install the native addon on ${process.platform}-${process.arch}, ${libcName()}.`,
      `vdpa: ${reason}; prebuilds exist for ${prebuildPlatforms}.`,
      `vdpa: ${problem}`,
      'vdpa: building the addon needs a C++17 compiler, make, python3 and Linux kernel headers 6.1 or newer:',
      '        Debian/Ubuntu:  apt-get install g++ make python3 linux-libc-dev',
      '        Fedora/RHEL:    dnf install gcc-c++ make python3 kernel-headers',
      '        Alpine (musl):  apk add g++ make python3 linux-headers',
      'vdpa: then run: npm rebuild vdpa',
    ].join('\n'),
  );
}

function main() {
  const prebuild = tryPrebuild();
  if (prebuild.file) return 0;
  const missing = missingTools();
  if (missing.length) {
    explain(prebuild.reason, `building it from source here is not possible: missing ${missing.join(', ')}.`);
    return 1;
  }
  // npm hands install scripts its own node-gyp; outside npm, node-gyp must be on PATH.
  const gyp = process.env.npm_config_node_gyp;
  const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  const result = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (result.status === 0) return 0;
  explain(prebuild.reason, `node-gyp rebuild failed (${result.error?.message ?? `exit ${result.status}`}), see above.`);
  return 1;
}

process.exitCode = main();

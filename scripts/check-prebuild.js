#!/usr/bin/env node
// Checks that the N-API prebuild under prebuilds/ is what node-gyp-build loads when there is no
// build/ directory (as for a user installing the published package), that it is the shipped addon
// alone (no testing addon, no test hooks), and that it drives a device.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'vdpa.node');
if (!fs.existsSync(prebuilt)) {
  console.error(`no prebuild at ${prebuilt}: run npm run prebuildify`);
  process.exit(1);
}
const others = fs.readdirSync(path.dirname(prebuilt)).filter((f) => f !== 'vdpa.node');
if (others.length > 0) {
  console.error(`prebuilds hold more than the shipped addon: ${others.join(', ')}`);
  process.exit(1);
}
const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-prebuild-'));
try {
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  fs.cpSync(path.join(root, 'dist', 'lib'), path.join(pkg, 'dist', 'lib'), { recursive: true });
  fs.cpSync(path.join(root, 'prebuilds'), path.join(pkg, 'prebuilds'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
  const script = `
    const resolved = require('node-gyp-build').resolve(${JSON.stringify(pkg)});
    if (!resolved.includes('prebuilds')) throw new Error('loaded ' + resolved + ', not the prebuild');
    const exported = Object.keys(require(resolved)).sort().join();
    if (exported !== 'Device,mockFaults,setErrorClass,vdpaDeviceInfo') throw new Error('the prebuild exports ' + exported);
    require('./dist/lib').openBlk('mock:blk', { mock: { capacity: 1 << 20 } }).then(async (blk) => {
      const buf = blk.allocBuffer(4096).fill(7);
      await blk.write(0, buf); buf.fill(0); await blk.read(0, buf);
      if (buf[4095] !== 7) throw new Error('data mismatch');
      await blk.close();
      console.log('prebuild ok: ' + resolved);
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { cwd: pkg, stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
} finally {
  fs.rmSync(pkg, { recursive: true, force: true });
}

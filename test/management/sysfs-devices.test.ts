// The vhost-vdpa node -> vdpa device lookup behind Device.vendorId, on a fake sysfs tree laid out as
// 6.12's: /sys/dev/char/MAJ:MIN links to .../<vdpa device>/vhost-vdpa-N, and the vdpa bus lists the
// parent. A real char device's number is split into major:minor the way glibc does.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { vdpaNameOfVhostNode } from '../../lib/sysfs-devices';

describe('management: vdpaNameOfVhostNode', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-sysfs-'));
  after(() => fs.rmSync(root, { recursive: true, force: true }));
  /** /sys/dev/char/MAJ:MIN -> devices/virtual/vduse/PARENT/PARENT/vhost-vdpa-0, PARENT on the vdpa bus or not. */
  function node(majMin: string, parent: string, onVdpaBus: boolean): void {
    const dir = path.join(root, 'devices', 'virtual', 'vduse', parent, parent, 'vhost-vdpa-0');
    fs.mkdirSync(dir, { recursive: true });
    fs.mkdirSync(path.join(root, 'dev', 'char'), { recursive: true });
    fs.symlinkSync(path.relative(path.join(root, 'dev', 'char'), dir), path.join(root, 'dev', 'char', majMin));
    if (onVdpaBus) {
      fs.mkdirSync(path.join(root, 'bus', 'vdpa', 'devices'), { recursive: true });
      fs.symlinkSync(path.dirname(dir), path.join(root, 'bus', 'vdpa', 'devices', parent));
    }
  }

  it('the parent of /sys/dev/char/MAJ:MIN, when the vdpa bus has it', async () => {
    // /dev/null is char 1:3 on every Linux; 5:0 (/dev/tty) must not be confused with it.
    node('1:3', 'vdpa7', true);
    node('5:0', 'other', true);
    assert.equal(await vdpaNameOfVhostNode('/dev/null', root), 'vdpa7');
  });

  it('undefined for a parent off the vdpa bus, a node without a sysfs entry, or no node at all', async () => {
    node('1:7', 'notvdpa', false); // /dev/full
    assert.equal(await vdpaNameOfVhostNode('/dev/full', root), undefined);
    assert.equal(await vdpaNameOfVhostNode('/dev/zero', root), undefined); // 1:5: not in the fake tree
    assert.equal(await vdpaNameOfVhostNode(path.join(root, 'missing'), root), undefined);
  });
});

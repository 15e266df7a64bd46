// The vhost-vdpa node -> vdpa device lookup behind Device.vendorId, on a fake sysfs tree: a real char
// device's number is split into major:minor the way glibc does, and the device link is followed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { vdpaNameOfVhostNode } from '../../lib/sysfs-devices';

describe('management: vdpaNameOfVhostNode', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-sysfs-'));
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('follows /sys/dev/char/MAJ:MIN/device of the node', async () => {
    // /dev/null is char 1:3 on every Linux; /dev/tty 5:0 must not be confused with it.
    for (const [maj, min, name] of [
      [1, 3, 'vdpa7'],
      [5, 0, 'other'],
    ] as const) {
      const dir = path.join(root, 'dev', 'char', `${maj}:${min}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.symlinkSync(`../../../bus/vdpa/devices/${name}`, path.join(dir, 'device'));
    }
    assert.equal(await vdpaNameOfVhostNode('/dev/null', root), 'vdpa7');
  });

  it('undefined for a node without a sysfs entry, or no node at all', async () => {
    assert.equal(await vdpaNameOfVhostNode('/dev/zero', root), undefined); // 1:5: not in the fake tree
    assert.equal(await vdpaNameOfVhostNode(path.join(root, 'missing'), root), undefined);
  });
});

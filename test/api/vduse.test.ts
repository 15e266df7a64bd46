// createVduseBlk without /dev/vduse: argument checks, and the errors the native layer reports for a
// control node that is missing or is not VDUSE's and for a backing file it cannot use. The device
// itself runs in the guest (test/vm/vduse.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { VdpaError, createVduseBlk, type VduseBlkOptions } from '../../lib';
import { TEST_TIMEOUT, failsWith } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
type Any = never; // casts for deliberately wrong arguments
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-vduse-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const MISSING = path.join(dir, 'no-such-dir', 'control');

async function vdpaFailure(options: VduseBlkOptions): Promise<VdpaError> {
  try {
    const dev = await createVduseBlk(options);
    await dev.close();
  } catch (e) {
    assert.ok(e instanceof VdpaError, `expected a VdpaError, got ${String(e)}`);
    return e;
  }
  assert.fail('createVduseBlk should have failed');
}

describe('createVduseBlk', () => {
  test('bad arguments are TypeError/RangeError', T, async () => {
    const ok = { name: 'n0', capacity: 1 << 20, controlPath: MISSING };
    await failsWith(() => createVduseBlk(undefined as Any), TypeError, 'no options');
    await failsWith(() => createVduseBlk({ ...ok, name: 3 as Any }), TypeError, 'name a number');
    await failsWith(() => createVduseBlk({ ...ok, name: '' }), RangeError, 'empty name');
    await failsWith(() => createVduseBlk({ ...ok, name: 'a/b' }), RangeError, 'name with a slash');
    await failsWith(() => createVduseBlk({ ...ok, name: 'x'.repeat(256) }), RangeError, 'name too long');
    await failsWith(() => createVduseBlk({ name: 'n0', controlPath: MISSING }), TypeError, 'neither file nor capacity');
    await failsWith(() => createVduseBlk({ ...ok, file: '/x' }), TypeError, 'both file and capacity');
    await failsWith(() => createVduseBlk({ ...ok, capacity: 1000 }), RangeError, 'capacity not whole sectors');
    await failsWith(() => createVduseBlk({ ...ok, capacity: 0 }), RangeError, 'capacity 0');
    await failsWith(() => createVduseBlk({ ...ok, capacity: '1M' as Any }), TypeError, 'capacity a string');
    await failsWith(() => createVduseBlk({ ...ok, capacity: undefined, file: 7 as Any }), TypeError, 'file a number');
    await failsWith(() => createVduseBlk({ ...ok, numQueues: 0 }), RangeError, 'numQueues 0');
    await failsWith(() => createVduseBlk({ ...ok, numQueues: 65 }), RangeError, 'numQueues 65');
    await failsWith(() => createVduseBlk({ ...ok, queueSize: 100 }), RangeError, 'queueSize not a power of two');
    await failsWith(() => createVduseBlk({ ...ok, queueSize: 65536 }), RangeError, 'queueSize too big');
    await failsWith(() => createVduseBlk({ ...ok, blockSize: 1000 }), RangeError, 'blockSize not a power of two');
    await failsWith(() => createVduseBlk({ ...ok, blockSize: 256 }), RangeError, 'blockSize too small');
    await failsWith(() => createVduseBlk({ ...ok, readOnly: 1 as Any }), TypeError, 'readOnly a number');
    await failsWith(() => createVduseBlk({ ...ok, serial: 'x'.repeat(21) }), RangeError, 'serial too long');
    await failsWith(() => createVduseBlk({ ...ok, serial: 5 as Any }), TypeError, 'serial a number');
    await failsWith(() => createVduseBlk({ ...ok, vendorId: -1 }), RangeError, 'vendorId negative');
    await failsWith(() => createVduseBlk({ ...ok, vendorId: 2 ** 32 }), RangeError, 'vendorId over 32 bits');
    await failsWith(() => createVduseBlk({ ...ok, vendorId: '1af4' as Any }), TypeError, 'vendorId a string');
    const read = (): Uint8Array => new Uint8Array(0);
    const write = (): void => {};
    await failsWith(
      () => createVduseBlk({ name: 'n0', handler: { read, write }, controlPath: MISSING }),
      TypeError,
      'handler without capacity',
    );
    await failsWith(() => createVduseBlk({ ...ok, handler: 'x' as Any }), TypeError, 'handler a string');
    await failsWith(() => createVduseBlk({ ...ok, handler: { write } as Any }), TypeError, 'handler without read');
    await failsWith(() => createVduseBlk({ ...ok, handler: { read } }), TypeError, 'writable handler without write');
    await failsWith(() => createVduseBlk({ ...ok, reconnect: 'yes' as Any }), TypeError, 'reconnect a string');
    await failsWith(
      () => createVduseBlk({ ...ok, reconnect: true, handler: { read, write } }),
      TypeError,
      'reconnect with a handler',
    );
    await failsWith(
      () => createVduseBlk({ ...ok, handler: { read, write, flush: 1 as Any } }),
      TypeError,
      'handler.flush a number',
    );
  });

  test('a missing /dev/vduse/control is ENOENT with a modprobe hint', T, async () => {
    const e = await vdpaFailure({ name: 'n0', capacity: 1 << 20, controlPath: MISSING });
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.syscall, 'open');
    assert.equal(e.path, MISSING);
    assert.match(e.hint ?? '', /modprobe vduse/);
  });

  test('a control node that is not VDUSE fails its first ioctl', T, async () => {
    const notVduse = path.join(dir, 'plain-file');
    fs.writeFileSync(notVduse, '');
    const e = await vdpaFailure({ name: 'n0', capacity: 1 << 20, controlPath: notVduse });
    assert.equal(e.code, 'ENOTTY');
    assert.equal(e.syscall, 'ioctl(VDUSE_SET_API_VERSION)');
  });

  test('a read-only JS handler needs no write; the missing control node is still reported', T, async () => {
    const e = await vdpaFailure({
      name: 'n0',
      capacity: 1 << 20,
      readOnly: true,
      handler: { read: (_o, n) => new Uint8Array(n) },
      controlPath: MISSING,
    });
    assert.equal(e.code, 'ENOENT');
  });

  test('backing files: missing, and smaller than a sector', T, async () => {
    const absent = path.join(dir, 'absent.img');
    const e1 = await vdpaFailure({ name: 'n0', file: absent, controlPath: MISSING });
    assert.equal(e1.code, 'ENOENT');
    assert.equal(e1.path, absent);
    const tiny = path.join(dir, 'tiny.img');
    fs.writeFileSync(tiny, Buffer.alloc(100));
    const e2 = await vdpaFailure({ name: 'n0', file: tiny, controlPath: MISSING });
    assert.equal(e2.code, 'EINVAL');
    assert.match(e2.hint ?? '', /smaller than one 512-byte sector/);
  });
});

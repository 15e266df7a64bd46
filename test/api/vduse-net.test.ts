// createVduseNet without /dev/vduse: argument checks, and the errors the native layer reports for a
// control node that is missing or is not VDUSE's. The NIC itself runs in the guest
// (test/vm/vduse-net.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { VdpaError, VduseNetDevice, createVduseNet, type VduseNetOptions } from '../../lib';
import { TEST_TIMEOUT, failsWith } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
type Any = never; // casts for deliberately wrong arguments
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-vduse-net-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const MISSING = path.join(dir, 'no-such-dir', 'control');

async function vdpaFailure(options: VduseNetOptions): Promise<VdpaError> {
  try {
    const nic = await createVduseNet(options);
    await nic.close();
  } catch (e) {
    assert.ok(e instanceof VdpaError, `expected a VdpaError, got ${String(e)}`);
    return e;
  }
  assert.fail('createVduseNet should have failed');
}

describe('createVduseNet', () => {
  test('bad arguments are TypeError/RangeError', T, async () => {
    const ok: VduseNetOptions = { name: 'nic0', controlPath: MISSING };
    await failsWith(() => createVduseNet(undefined as Any), TypeError, 'no options');
    await failsWith(() => createVduseNet({ ...ok, name: 3 as Any }), TypeError, 'name a number');
    await failsWith(() => createVduseNet({ ...ok, name: '' }), RangeError, 'empty name');
    await failsWith(() => createVduseNet({ ...ok, name: 'a/b' }), RangeError, 'name with a slash');
    await failsWith(() => createVduseNet({ ...ok, name: 'x'.repeat(256) }), RangeError, 'name too long');
    await failsWith(() => createVduseNet({ ...ok, mac: 5 as Any }), TypeError, 'mac a number');
    await failsWith(() => createVduseNet({ ...ok, mac: '52:54:00:12:34' }), RangeError, 'mac of 5 bytes');
    await failsWith(() => createVduseNet({ ...ok, mac: new Uint8Array(7) }), RangeError, 'mac of 7 bytes');
    await failsWith(() => createVduseNet({ ...ok, mtu: 67 }), RangeError, 'mtu 67');
    await failsWith(() => createVduseNet({ ...ok, mtu: 65536 }), RangeError, 'mtu 65536');
    await failsWith(() => createVduseNet({ ...ok, mtu: 1500.5 }), RangeError, 'mtu not an integer');
    await failsWith(() => createVduseNet({ ...ok, mtu: '1500' as Any }), TypeError, 'mtu a string');
    await failsWith(() => createVduseNet({ ...ok, queueSize: 100 }), RangeError, 'queueSize not a power of two');
    await failsWith(() => createVduseNet({ ...ok, queueSize: 65536 }), RangeError, 'queueSize too big');
    await failsWith(() => createVduseNet({ ...ok, queueSize: 1 }), RangeError, 'queueSize 1');
    await failsWith(() => createVduseNet({ ...ok, linkUp: 1 as Any }), TypeError, 'linkUp a number');
    await failsWith(() => createVduseNet({ ...ok, controlPath: 1 as Any }), TypeError, 'controlPath a number');
  });

  test('a missing /dev/vduse/control is ENOENT with a modprobe hint', T, async () => {
    const e = await vdpaFailure({ name: 'nic0', mac: '52:54:00:12:34:57', mtu: 9000, controlPath: MISSING });
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.syscall, 'open');
    assert.equal(e.path, MISSING);
    assert.match(e.hint ?? '', /modprobe vduse/);
  });

  test('a control node that is not VDUSE fails its first ioctl', T, async () => {
    const notVduse = path.join(dir, 'plain-file');
    fs.writeFileSync(notVduse, '');
    const e = await vdpaFailure({ name: 'nic0', controlPath: notVduse });
    assert.equal(e.code, 'ENOTTY');
    assert.equal(e.syscall, 'ioctl(VDUSE_SET_API_VERSION)');
  });
});

describe('VduseNetDevice.connectTap', () => {
  // Argument checks come before the native layer: a handle that fails the test when reached.
  const unreached = (): never => assert.fail('the native layer should not have been reached');
  const handle = { name: 'nic0', maxFrame: 1518, connectTap: unreached, connect: unreached };
  const nic = new VduseNetDevice(handle as Any, '52:54:00:12:34:57', 1500, true);

  test('a name that is not a string is a TypeError', T, async () => {
    await failsWith(() => nic.connectTap(3 as Any), TypeError, 'a number');
    await failsWith(() => nic.connectTap(undefined as Any), TypeError, 'no name');
  });

  test('a name the kernel would refuse is a RangeError', T, async () => {
    await failsWith(() => nic.connectTap(''), RangeError, 'empty');
    await failsWith(() => nic.connectTap('t'.repeat(16)), RangeError, '16 bytes (IFNAMSIZ with the NUL)');
    await failsWith(() => nic.connectTap('\u00e9'.repeat(8)), RangeError, '16 bytes in UTF-8');
    await failsWith(() => nic.connectTap('tap/0'), RangeError, 'a slash');
    await failsWith(() => nic.connectTap('tap 0'), RangeError, 'a space');
    await failsWith(() => nic.connectTap('tap:0'), RangeError, 'a colon');
  });
});

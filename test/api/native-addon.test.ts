// The shipped addon itself: it exports only what lib/ uses, and the completions array its queues
// write into stays valid whatever JS does with the buffer.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { native } from '../../lib/native';
import { collectGarbage } from '../helpers/util';

describe('shipped addon', () => {
  test('exports only what lib/ uses (no test or benchmark hooks)', () => {
    assert.deepEqual(Object.keys(native).sort(), [
      'NativeNetLoop',
      'createVduseBlk',
      'createVduseNet',
      'mockFaults',
      'mockNetFaults',
      'netlinkTransact',
      'openDevice',
      'setErrorClass',
    ]);
  });

  test('a queue delivers completions where JS reads them after its completions buffer was transferred', async () => {
    const dev = await native.openDevice('mock:blk', { capacity: 1 << 20 });
    try {
      await dev.negotiate(0n);
      const seen: [number, number][] = [];
      let done: () => void = () => {};
      const completed = new Promise<void>((resolve) => (done = resolve));
      const q = await dev.createQueue(0, 8, (count, broken) => {
        assert.equal(broken, undefined);
        for (let i = 0; i < count; i++) seen.push([q.completions[2 * i] as number, q.completions[2 * i + 1] as number]);
        done();
      });
      await dev.start();
      const region = dev.allocRegion(4096, false);
      // virtio-blk read of sector 0: 16-byte header (type 0 = IN), 512 data bytes, 1 status byte.
      new Uint8Array(region.buffer).fill(0, 0, 16);
      const h = region.handle;
      const batch = new Uint32Array([9, 3, h, 0, 16, 0, h, 512, 512, 1, h, 16, 1, 1]);
      // Transfer the buffer away and drop the clone: memory the addon no longer owned would be
      // freed here (native memory is copied instead, and stays the addon's).
      const old = q.completions;
      structuredClone(old.buffer, { transfer: [old.buffer] });
      await tick();
      collectGarbage();
      await tick();
      q.ref();
      assert.equal(q.submit(batch, 1), 1);
      await completed;
      q.unref();
      assert.deepEqual(seen, [[9, 513]]);
    } finally {
      await dev.close([0], 1000);
    }
  });
});

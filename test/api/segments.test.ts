// Requests split to what one chain can carry: the device's seg_max and size_max, and the ring (one
// indirect table, or the queue itself). A chain the ring cannot take is an E2BIG with path and hint.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Device, Feature, VdpaError, openBlk, openDevice } from '../../lib';
import { TokenWaiters } from '../../lib/queue';
import { Rng, TEST_TIMEOUT, assertBytes } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

describe('request splitting', () => {
  for (const [queueSize, packed] of [
    [128, false],
    [16, false],
    [100, true],
  ] as const) {
    test(
      `segMax 4096 with sizeMax 512, queue ${queueSize}${packed ? ' packed' : ''}: split, not E2BIG`,
      T,
      async () => {
        const blk = await openBlk('mock:blk', {
          queueSize,
          packed,
          mock: { capacity: 8 << 20, segMax: 4096, sizeMax: 512 },
        });
        try {
          const rng = new Rng();
          const data = rng.bytes(3 << 20);
          await blk.write(0, data);
          const back = new Uint8Array(data.length);
          await blk.read(0, back);
          assertBytes(back, data, 'plain memory round trip');
          const dma = blk.allocBuffer(2 << 20);
          await blk.read(4096, dma);
          assertBytes(dma, data.subarray(4096, 4096 + dma.length), 'zero-copy read');
          dma.set(rng.bytes(dma.length));
          await blk.write(1 << 20, dma);
          await blk.read(1 << 20, back.subarray(0, dma.length));
          assertBytes(back.subarray(0, dma.length), dma, 'zero-copy write read back');
        } finally {
          await blk.close();
        }
      },
    );
  }

  test('a chain longer than the ring can take: E2BIG with the device path and a hint', T, async () => {
    const dev: Device = await openDevice('mock:blk');
    try {
      await dev.negotiate(0n); // no indirect descriptors: a chain needs one ring slot per buffer
      assert.equal(dev.features & Feature.RING_INDIRECT_DESC, 0n);
      const errors: Error[] = [];
      const q = await dev.createQueue<string>(0, 8, {
        onChain: (_ctx, _t, _len, err) => err && errors.push(err),
        maxSegments: 16,
        waiters: new TokenWaiters(),
      });
      await dev.start();
      const mem = dev.allocInternal(4096);
      const segs = Array.from({ length: 9 }, (_, i) => ({
        region: mem.handle,
        offset: i * 16,
        length: 16,
        writable: false,
      }));
      q.enqueue(q.tryAcquire(), segs, 'too long');
      await new Promise((r) => setImmediate(r));
      assert.equal(errors.length, 1);
      const e = errors[0];
      assert.ok(e instanceof VdpaError, String(e));
      assert.equal(e.code, 'E2BIG');
      assert.equal(e.path, 'mock:blk');
      assert.match(e.hint ?? '', /queueSize/);
      assert.match(e.message, /9 buffers/);
    } finally {
      await dev.close();
    }
  });
});

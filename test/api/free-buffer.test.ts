// freeBuffer() next to requests queued in the same tick: it refuses a buffer they use (EBUSY), and
// a chain native code refuses fails alone, not with the unrelated chains of its batch.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VdpaError, openBlk, openDevice } from '../../lib';
import { TokenWaiters } from '../../lib/queue';
import { Rng, TEST_TIMEOUT, assertBytes } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

describe('freeBuffer and queued requests', () => {
  test('freeBuffer(a) in the tick that queued requests on a, b and plain memory', T, async () => {
    const blk = await openBlk('mock:blk', { numQueues: 2, mock: { numQueues: 2, capacity: 1 << 20 } });
    try {
      const data = new Rng().bytes(16384);
      await blk.write(0, data);
      const a = blk.allocBuffer(4096);
      const b = blk.allocBuffer(4096);
      const plain = new Uint8Array(4096);
      const loose = blk.allocBuffer(4096);
      const reqs = [blk.read(0, a), blk.read(4096, b), blk.read(8192, plain), blk.read(12288, a)];
      assert.throws(
        () => blk.device.freeBuffer(a),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBUSY',
      );
      blk.device.freeBuffer(loose); // not used by any request: freed at once
      await Promise.all(reqs);
      assertBytes(b, data.subarray(4096, 8192), 'b');
      assertBytes(plain, data.subarray(8192, 12288), 'plain');
      blk.device.freeBuffer(a);
      blk.device.freeBuffer(b);
    } finally {
      await blk.close();
    }
  });

  test('a chain on a dead region fails alone; its batch-mates are submitted', T, async () => {
    const dev = await openDevice('mock:blk');
    try {
      await dev.negotiate(0n);
      const results: [string, Error | undefined][] = [];
      const q = await dev.createQueue<string>(0, 8, {
        onChain: (ctx, _t, _len, err) => results.push([ctx, err]),
        maxSegments: 1,
        waiters: new TokenWaiters(),
      });
      await dev.start();
      // The mock completes any chain (it only parses blk requests it can read): the point is the submit.
      const live = dev.allocInternal(4096);
      const doomed = dev.allocBuffer(4096);
      const handle = dev.dmaLocation(doomed)?.region.native.handle as number;
      q.enqueue(q.tryAcquire(), [{ region: live.handle, offset: 0, length: 16, writable: false }], 'first');
      q.enqueue(q.tryAcquire(), [{ region: handle, offset: 0, length: 16, writable: false }], 'dead');
      q.enqueue(q.tryAcquire(), [{ region: live.handle, offset: 64, length: 16, writable: false }], 'last');
      dev.freeBuffer(doomed); // nothing of the library pins it: the low-level chain above does not count
      const until = Date.now() + 2000;
      while (results.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      const byCtx = new Map(results);
      assert.ok(byCtx.get('dead') instanceof Error, 'the chain on the freed region fails');
      assert.ok(
        byCtx.has('first') && byCtx.has('last'),
        `the others reach the device: ${JSON.stringify([...byCtx.keys()])}`,
      );
      assert.ok(!(byCtx.get('first') instanceof RangeError) && !(byCtx.get('last') instanceof RangeError));
    } finally {
      await dev.close();
    }
  });
});

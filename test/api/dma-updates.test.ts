// allocBuffer/freeBuffer while requests are in flight on a device where a DMA mapping change must not
// race I/O. The mock's strictDmaUpdates behaves like a VDUSE device: a mapping change while it works
// on chains breaks it (DEVICE_NEEDS_RESET, every request fails), so these pass only if the library
// holds submissions, lets the device go idle, and only then applies the update.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlk, openDevice } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, rejectsWithCode } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
const CHUNK = 64 * 1024;
const strict = { strictDmaUpdates: true, capacity: 8 << 20 };

describe('DMA updates under I/O (strict mock, as VDUSE)', () => {
  test('alloc/free in a loop while 32 bounce-buffer writes are in flight: all succeed, data right', T, async () => {
    const blk = await openBlk('mock:blk', { mock: strict });
    let broken: Error | undefined;
    blk.device.on('needsReset', (e: Error) => (broken = e));
    try {
      const rng = new Rng(7);
      const rounds = 4;
      const expected = new Uint8Array(32 * CHUNK);
      for (let round = 0; round < rounds; round++) {
        const writes: Promise<void>[] = [];
        for (let i = 0; i < 32; i++) {
          const data = rng.bytes(CHUNK);
          expected.set(data, i * CHUNK);
          writes.push(blk.write(i * CHUNK, data)); // ordinary memory: bounce-buffered
        }
        // Allocations and frees while those writes are with the device (the mock takes ~2 ms a batch).
        const kept: Uint8Array[] = [];
        let settled = false;
        const all = Promise.all(writes).finally(() => (settled = true));
        for (let n = 0; n < 12 && !settled; n++) {
          kept.push(blk.allocBuffer(4096 * (1 + (n % 3))));
          if (kept.length > 2) blk.device.freeBuffer(kept.shift() as Uint8Array);
          await new Promise((r) => setImmediate(r));
        }
        await all;
        for (const b of kept) blk.device.freeBuffer(b);
      }
      assert.equal(broken, undefined, 'the device never saw a mapping change under I/O');
      const back = new Uint8Array(32 * CHUNK);
      await blk.read(0, back);
      assertBytes(back, expected, 'disk contents');
      assert.ok(blk.bounceStats.chunks >= 32, `the bounce pool grew (${blk.bounceStats.chunks} chunks)`);
    } finally {
      await blk.close();
    }
  });

  test('a buffer used at once, while other requests are in flight, is mapped before its request goes', T, async () => {
    const blk = await openBlk('mock:blk', { mock: strict });
    try {
      const rng = new Rng(11);
      const others = Array.from({ length: 16 }, (_, i) => blk.write(CHUNK * (i + 1), rng.bytes(4096)));
      const buf = blk.allocBuffer(8192);
      buf.set(rng.bytes(8192));
      const copy = buf.slice();
      const doomed = blk.allocBuffer(4096);
      blk.device.freeBuffer(doomed); // its mapping was still queued: dropped, never applied
      await Promise.all([blk.write(0, buf), ...others]);
      const back = blk.allocBuffer(8192);
      await blk.read(0, back);
      assertBytes(back, copy, 'zero-copy write through a new buffer');
      blk.device.freeBuffer(buf);
      blk.device.freeBuffer(back);
    } finally {
      await blk.close();
    }
  });

  test('the wait for the device is bounded by requestTimeout', T, async () => {
    const blk = await openBlk('mock:blk', {
      requestTimeout: 300,
      mock: { ...strict, fault: 'stall', faultAfter: 0 },
    });
    try {
      const stuck = blk.write(0, new Uint8Array(4096));
      await new Promise((r) => setImmediate(r));
      const buf = blk.allocBuffer(4096); // its mapping waits for the stuck write
      const start = Date.now();
      const held = blk.write(4096, buf);
      await rejectsWithCode(stuck, 'ETIMEDOUT', 'the stuck write');
      await rejectsWithCode(held, 'ETIMEDOUT', 'the write waiting for the update');
      assert.ok(Date.now() - start < 300 + 1000, `settled after ${Date.now() - start} ms`);
    } finally {
      await blk.close();
    }
  });

  test('only transports that need it defer: a plain mock maps at once, a strict one after start', T, async () => {
    for (const [mock, pendingAfterStart] of [
      [{}, false],
      [{ strictDmaUpdates: true }, true],
    ] as const) {
      const dev = await openDevice('mock:blk', { mock });
      try {
        await dev.negotiate(0n);
        assert.equal(dev.allocInternal(4096).pending, false, 'before start: mapped at once');
        await dev.start();
        assert.equal(dev.allocInternal(4096).pending, pendingAfterStart, `after start (${JSON.stringify(mock)})`);
      } finally {
        await dev.close();
      }
    }
  });

  test('strictDmaUpdates is checked like the other mock settings', T, async () => {
    await assert.rejects(
      openBlk('mock:blk', { mock: { strictDmaUpdates: 1 as unknown as boolean } }),
      (e: unknown) => e instanceof TypeError,
    );
  });
});

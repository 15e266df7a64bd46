// A caller's buffer that changes under a request in flight (its ArrayBuffer transferred, a resizable
// buffer shrunk, a subclass with a throwing set(), a DMA buffer of a device closed meanwhile): that
// request rejects; the other completions of the same wake-up are delivered; no bounce chunk leaks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlk, openNet } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

class ThrowingSet extends Uint8Array {
  override set(): void {
    throw new Error('set() refused');
  }
}

type Resizable = ArrayBuffer & { resize(n: number): void };
const ResizableBuffer = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Resizable;

function detach(buf: Uint8Array): void {
  structuredClone(buf.buffer, { transfer: [buf.buffer as ArrayBuffer] });
}

describe('buffers that change while a request is in flight', () => {
  test('bounce reads: the broken one rejects, its neighbours complete, chunks come back', T, async () => {
    // blk holds its completions back 200 ms: other.close() (on the threadpool) detaches `foreign`
    // before the read into it completes.
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20, completionDelayMs: 200 } });
    const other = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      const data = new Rng().bytes(65536);
      await blk.write(0, data);
      for (let round = 0; round < 5; round++) {
        const good = Array.from({ length: 8 }, () => new Uint8Array(8192));
        const transferred = new Uint8Array(8192);
        const rab = new ResizableBuffer(8192, { maxByteLength: 16384 });
        const shrunk = new Uint8Array(rab, 0, 8192);
        const tracking = new Uint8Array(new ResizableBuffer(8192, { maxByteLength: 16384 }));
        const subclass = new ThrowingSet(8192);
        const reqs = [
          ...good.map((b, i) => blk.read(i * 8192, b)),
          blk.read(0, transferred),
          blk.read(0, shrunk),
          blk.read(0, tracking),
          blk.read(0, subclass),
        ];
        // A DMA buffer of another device is plain memory to blk: bounced.
        const foreignRead = round === 0 ? blk.read(0, other.allocBuffer(8192)) : undefined;
        foreignRead?.catch(() => {}); // awaited below, after it may have rejected
        // While the reads are with the device:
        detach(transferred);
        rab.resize(0);
        (tracking.buffer as Resizable).resize(512);
        if (round === 0) await other.close(); // detaches `foreign`
        const results = await Promise.allSettled(reqs);
        good.forEach((b, i) => {
          assert.equal(results[i]?.status, 'fulfilled', `neighbour ${i}`);
          assertBytes(b, data.subarray(i * 8192, (i + 1) * 8192), `neighbour ${i}`);
        });
        for (const [i, what] of [
          [8, 'transferred'],
          [9, 'shrunk'],
          [10, 'length-tracking shrunk'],
        ] as const) {
          const r = results[i] as PromiseSettledResult<void>;
          assert.equal(r.status, 'rejected', what);
          assert.ok((r as PromiseRejectedResult).reason instanceof TypeError, `${what}: ${String(r)}`);
        }
        // The subclass's own set() is never called from a completion: the read simply lands.
        assert.equal(results[11]?.status, 'fulfilled');
        assertBytes(new Uint8Array(subclass.buffer), data.subarray(0, 8192), 'subclass read');
        if (foreignRead) await assert.rejects(foreignRead, TypeError, 'DMA buffer of a device closed meanwhile');
      }
      const s = blk.bounceStats;
      assert.equal(s.free, s.chunks, 'no bounce chunk leaked');
    } finally {
      await blk.close();
      await other.close();
    }
  });

  test('bounce writes still waiting for a chunk: a detached source rejects, the others go', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 64 << 20 } });
    try {
      // More bounce traffic than the pool holds (256 chunks of 64 KiB): the tail waits for chunks.
      const bufs = Array.from({ length: 300 }, (_, i) => new Uint8Array(65536).fill(i & 0xff));
      const reqs = bufs.map((b, i) => blk.write(i * 65536, b));
      detach(bufs[299] as Uint8Array);
      const results = await Promise.allSettled(reqs);
      assert.ok((results[299] as PromiseRejectedResult).reason instanceof TypeError, 'detached source');
      assert.equal(results.slice(0, 299).filter((r) => r.status === 'rejected').length, 0);
      const back = new Uint8Array(65536);
      await blk.read(298 * 65536, back);
      assert.ok(back.every((x) => x === 298 % 256));
      assert.equal(blk.bounceStats.free, blk.bounceStats.chunks);
    } finally {
      await blk.close();
    }
  });

  test('sendBatch: a frame detached while queued fails the batch; the other frames are sent', T, async () => {
    const net = await openNet('mock:net', { queueSize: 16 });
    try {
      const frames = Array.from({ length: 64 }, (_, i) => new Uint8Array(60).fill(i));
      const p = net.sendBatch(frames);
      detach(frames[40] as Uint8Array); // still waiting for a transmit slot
      await assert.rejects(p, TypeError);
      let got = 0;
      const seen = new Set<number>();
      while (got < 63) {
        const f = await net.receive({ signal: AbortSignal.timeout(2000) });
        seen.add(f[0] as number);
        got++;
      }
      assert.equal(seen.has(40), false, 'the detached frame was not sent');
      assert.equal(seen.size, 63);
      await net.send(new Uint8Array(60)); // still works
    } finally {
      await net.close();
    }
  });
});

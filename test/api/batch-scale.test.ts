// blk.batch() and net.sendBatch() with far more entries than the rings hold: linear, not quadratic
// (the waiting entries used to be taken with Array.prototype.shift, O(n) each).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlk, openNet, type BlkOp } from '../../lib';
import { TEST_TIMEOUT } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT * 3 };
const BIG = 200_000;

async function ms(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

describe('batch scale', () => {
  test(`blk.batch() of ${BIG} entries completes; 4x the entries takes about 4x the time`, T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      const plain = new Uint8Array(512);
      const dma = blk.allocBuffer(512);
      const ops = (n: number, buffer: Uint8Array): BlkOp[] =>
        Array.from({ length: n }, (_, i) => ({ op: i % 2 ? 'read' : 'write', offset: (i % 2048) * 512, buffer }));
      await blk.batch(ops(BIG, plain)); // through bounce buffers: waits for chunks and for slots
      await blk.batch(ops(20_000, dma)); // warm-up
      // Ratio of times on the same machine, best of two: linear is ~4, quadratic ~16.
      const small = Math.min(
        await ms(() => blk.batch(ops(BIG / 4, dma))),
        await ms(() => blk.batch(ops(BIG / 4, dma))),
      );
      const big = Math.min(await ms(() => blk.batch(ops(BIG, dma))), await ms(() => blk.batch(ops(BIG, dma))));
      assert.ok(big / small < 10, `${BIG / 4} entries: ${small.toFixed(0)} ms, ${BIG}: ${big.toFixed(0)} ms`);
    } finally {
      await blk.close();
    }
  });

  test(`net.sendBatch() of ${BIG} frames completes; 4x the frames takes about 4x the time`, T, async () => {
    const net = await openNet('mock:net');
    try {
      const frames = (n: number): Uint8Array[] => Array.from({ length: n }, () => new Uint8Array(60));
      await net.sendBatch(frames(20_000)); // warm-up
      const small = Math.min(
        await ms(() => net.sendBatch(frames(BIG / 4))),
        await ms(() => net.sendBatch(frames(BIG / 4))),
      );
      const big = Math.min(await ms(() => net.sendBatch(frames(BIG))), await ms(() => net.sendBatch(frames(BIG))));
      assert.ok(big / small < 10, `${BIG / 4} frames: ${small.toFixed(0)} ms, ${BIG}: ${big.toFixed(0)} ms`);
    } finally {
      await net.close();
    }
  });
});

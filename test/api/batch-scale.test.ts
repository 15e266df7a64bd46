// blk.batch() and net.sendBatch() with far more entries than the rings hold. The waiting entries
// used to be taken with Array.prototype.shift (O(n) each): 200k entries then took over 30 s, so
// the test's timeout is the guard; every entry must also come back with the right result.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlk, openNet, type BlkOp } from '../../lib';
import { TEST_TIMEOUT } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT * 3 };
const BIG = 200_000;

describe('batch scale', () => {
  test(`blk.batch() of ${BIG} entries completes, bounce-buffered and zero-copy`, T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      // Writes of `src` to the even blocks, reads of the odd ones (never written: zeros) into `dst`.
      const ops = (n: number, src: Uint8Array, dst: Uint8Array): BlkOp[] =>
        Array.from({ length: n }, (_, i) =>
          i % 2
            ? { op: 'read', offset: (i % 2048) * 512, buffer: dst }
            : { op: 'write', offset: (i % 2048) * 512, buffer: src },
        );
      // Through bounce buffers: entries wait for chunks and for ring slots.
      const plainDst = new Uint8Array(512).fill(1);
      await blk.batch(ops(BIG, new Uint8Array(512).fill(0x5a), plainDst));
      assert.ok(plainDst.every((b) => b === 0));
      const dmaDst = blk.allocBuffer(512).fill(1);
      await blk.batch(ops(BIG, blk.allocBuffer(512).fill(0xa5), dmaDst));
      assert.ok(dmaDst.every((b) => b === 0));
      const check = new Uint8Array(512);
      await blk.read(2046 * 512, check);
      assert.ok(check.every((b) => b === 0xa5));
    } finally {
      await blk.close();
    }
  });

  test(`net.sendBatch() of ${BIG} frames completes`, T, async () => {
    const net = await openNet('mock:net');
    try {
      const frames = Array.from({ length: BIG }, () => new Uint8Array(60));
      assert.equal(await net.sendBatch(frames), undefined);
    } finally {
      await net.close();
    }
  });
});

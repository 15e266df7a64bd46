// mock:blk keeps its disk sparse: untouched, discarded and zeroed ranges cost no memory, so a disk far
// larger than RAM works as long as what is written fits. These are resource checks (the process's
// resident set from /proc/self/status), not timing checks.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { VdpaError, openBlk, type BlkDevice } from '../../lib';
import { TEST_TIMEOUT, assertFilled } from '../helpers/util';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const T = { timeout: Math.max(TEST_TIMEOUT, 60_000) };

/** Resident set size of this process, in bytes. */
function rss(): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  assert.ok(m, 'VmRSS in /proc/self/status');
  return Number(m[1]) * 1024;
}

async function withBlk(capacity: number, fn: (blk: BlkDevice) => Promise<void>): Promise<void> {
  const blk = await openBlk('mock:blk', { mock: { capacity } });
  try {
    await fn(blk);
  } finally {
    await blk.close();
  }
}

/** Writes `bytes` of `value` at `offset` in 1 MiB requests from one DMA buffer (no copies that stay). */
async function fill(blk: BlkDevice, offset: number, bytes: number, value: number): Promise<void> {
  const buf = blk.allocBuffer(MiB).fill(value);
  for (let at = 0; at < bytes; at += MiB) await blk.write(offset + at, buf);
  blk.device.freeBuffer(buf);
}

describe('mock:blk sparse storage', () => {
  for (const op of ['discard', 'writeZeroes'] as const) {
    test(`${op} of 512 MiB never written costs no memory`, T, () =>
      withBlk(GiB, async (blk) => {
        const before = rss();
        await blk[op](0, 512 * MiB);
        const grown = rss() - before;
        assert.ok(grown < 32 * MiB, `resident set grew by ${(grown / MiB).toFixed(1)} MiB`);
        const back = new Uint8Array(MiB).fill(0xff);
        await blk.read(256 * MiB, back);
        assertFilled(back, 0, 'discarded range reads as zeroes');
      }),
    );

    test(`${op} gives written memory back and keeps the bytes around the range`, T, () =>
      withBlk(256 * MiB, async (blk) => {
        const base = rss();
        await fill(blk, 0, 96 * MiB, 0xa5);
        const written = rss();
        assert.ok(written - base > 64 * MiB, `writing 96 MiB grew the resident set by ${(written - base) / MiB} MiB`);
        // Not page-aligned at either end: the partial pages are zeroed in place.
        const start = 512;
        const end = 96 * MiB - 1024;
        await blk[op](start, end - start);
        const after = rss();
        assert.ok(written - after > 64 * MiB, `${op} gave back only ${((written - after) / MiB).toFixed(1)} MiB`);
        const head = new Uint8Array(4096);
        await blk.read(0, head);
        assertFilled(head.subarray(0, start), 0xa5, 'bytes before the range');
        assertFilled(head.subarray(start), 0, 'start of the range');
        const tail = new Uint8Array(4096);
        await blk.read(96 * MiB - 4096, tail);
        assertFilled(tail.subarray(0, 4096 - 1024), 0, 'end of the range');
        assertFilled(tail.subarray(4096 - 1024), 0xa5, 'bytes after the range');
      }),
    );
  }

  test('a 1 TiB disk works sparse: far ends written and read, a big discard, little memory', T, async () => {
    const TiB = 2 ** 40;
    const strict = fs.readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim() === '2';
    if (strict) {
      // Without overcommit the kernel cannot reserve it: a clear error, not an OOM kill later.
      await assert.rejects(openBlk('mock:blk', { mock: { capacity: TiB } }), (e: unknown) => {
        assert.ok(e instanceof VdpaError && e.code === 'ENOMEM', String(e));
        return true;
      });
      return;
    }
    await withBlk(TiB, async (blk) => {
      assert.equal(blk.capacity, TiB);
      const before = rss();
      const data = new Uint8Array(4096).map((_, i) => i & 0xff);
      for (const at of [0, TiB / 2, TiB - 4096]) {
        await blk.write(at, data);
        const back = new Uint8Array(4096);
        await blk.read(at, back);
        assert.deepEqual(back, data, `data at ${at}`);
      }
      await blk.discard(TiB / 4, 4 * GiB);
      const grown = rss() - before;
      assert.ok(grown < 32 * MiB, `resident set grew by ${(grown / MiB).toFixed(1)} MiB`);
    });
  });

  test('sector numbers past 32 bits (a 4 TiB disk) reach their own blocks, not those 2 TiB lower', T, async () => {
    const TiB = 2 ** 40;
    if (fs.readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim() === '2') {
      await assert.rejects(openBlk('mock:blk', { mock: { capacity: 4 * TiB } }), { code: 'ENOMEM' });
      return;
    }
    await withBlk(4 * TiB, async (blk) => {
      const high = 2 * TiB + 8192; // sector 2^32 + 16: its low 32 bits alone name sector 16
      const data = blk.allocBuffer(4096).map((_, i) => (i * 7) & 0xff);
      await blk.write(high, data);
      const back = blk.allocBuffer(4096);
      await blk.read(high, back);
      assert.deepEqual(back, data);
      await blk.read(8192, back);
      assertFilled(back, 0, 'the block at sector 16 was not written');
      await blk.discard(high, 4096);
      await blk.read(high, back);
      assertFilled(back, 0, 'the discard reached sector 2^32 + 16');
    });
  });

  test('a capacity no address space can hold is refused with ENOMEM', T, async () => {
    await assert.rejects(openBlk('mock:blk', { mock: { capacity: 2 ** 50 } }), (e: unknown) => {
      assert.ok(e instanceof VdpaError, String(e));
      assert.equal(e.code, 'ENOMEM', e.message);
      assert.match(e.message + String(e.hint), /capacity/);
      return true;
    });
  });
});

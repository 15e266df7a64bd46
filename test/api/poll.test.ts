// BlkOptions.pollMicros and NetOptions.pollMicros: the polling mode takes completions off the used
// ring after each wake-up.
// What must hold is that nothing changes but the cost: every request completes exactly once with
// the right data, close and abort behave as without it, and bad values are refused before opening.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlk, openNet, type BlkDevice } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, failsWith } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT * 3 };
const BLOCK = 4096;
const BLOCKS = 256;

async function withPolling(
  opts: { packed?: boolean; numQueues?: number },
  fn: (blk: BlkDevice) => Promise<void>,
): Promise<void> {
  const numQueues = opts.numQueues ?? 1;
  const blk = await openBlk('mock:blk', {
    pollMicros: 500,
    numQueues,
    packed: opts.packed,
    queueSize: 64,
    mock: { capacity: BLOCKS * BLOCK, numQueues },
  });
  try {
    await fn(blk);
  } finally {
    await blk.close();
  }
}

describe('BlkOptions.pollMicros', () => {
  test('bad values are TypeError/RangeError before anything opens', T, async () => {
    await failsWith(() => openBlk('mock:blk', { pollMicros: -1 }), RangeError, 'pollMicros -1');
    await failsWith(() => openBlk('mock:blk', { pollMicros: 1.5 }), RangeError, 'pollMicros 1.5');
    await failsWith(() => openBlk('mock:blk', { pollMicros: 1_000_001 }), RangeError, 'pollMicros 1000001');
    await failsWith(() => openBlk('mock:blk', { pollMicros: '10' as unknown as number }), TypeError, "pollMicros '10'");
  });

  for (const packed of [false, true])
    test(`a depth-32 random load over 2 queues (${packed ? 'packed' : 'split'}) reads back what it wrote`, T, () =>
      withPolling({ packed, numQueues: 2 }, async (blk) => {
        const rng = new Rng(packed ? 7 : 8);
        const model = new Uint8Array(BLOCKS); // the fill byte of each block (0 = never written)
        const buf = blk.allocBuffer(32 * BLOCK);
        let completed = 0;
        for (let round = 0; round < 40; round++) {
          // 32 distinct blocks per round: writes and reads in one round never overlap.
          const blocks = new Set<number>();
          while (blocks.size < 32) blocks.add(rng.below(BLOCKS));
          const ops = [...blocks].map(async (block, i) => {
            const slot = buf.subarray(i * BLOCK, (i + 1) * BLOCK);
            if (rng.below(2) === 0) {
              const value = 1 + rng.below(255);
              slot.fill(value);
              await blk.write(block * BLOCK, slot);
              model[block] = value;
            } else {
              const back = await blk.read(block * BLOCK, slot);
              assert.equal(back, slot);
              assertBytes(back, new Uint8Array(BLOCK).fill(model[block] as number), `block ${block}`);
            }
            completed++;
          });
          await Promise.all(ops);
        }
        assert.equal(completed, 40 * 32);
        await blk.batch(
          Array.from({ length: 16 }, (_, i) => ({
            op: 'read' as const,
            offset: i * BLOCK,
            buffer: buf.subarray(0, BLOCK),
          })),
        );
      }),
    );

  test('close with requests in flight settles each of them once', T, async () => {
    const blk = await openBlk('mock:blk', { pollMicros: 1000, queueSize: 64, mock: { capacity: BLOCKS * BLOCK } });
    const buf = blk.allocBuffer(64 * BLOCK);
    const settled: string[] = [];
    const ps = Array.from({ length: 64 }, (_, i) =>
      blk.read((i % BLOCKS) * BLOCK, buf.subarray(i * BLOCK, (i + 1) * BLOCK)).then(
        () => settled.push('ok'),
        (e: { code?: string }) => settled.push(String(e.code)),
      ),
    );
    await blk.close();
    await Promise.all(ps);
    assert.equal(settled.length, 64);
    for (const s of settled) assert.ok(s === 'ok' || s === 'ECANCELED' || s === 'EBADF', s);
  });

  test('an aborted request rejects at once, the others complete', T, () =>
    withPolling({}, async (blk) => {
      const buf = blk.allocBuffer(8 * BLOCK);
      const ac = new AbortController();
      const aborted = blk.read(0, buf.subarray(0, BLOCK), { signal: ac.signal });
      const others = Array.from({ length: 7 }, (_, i) =>
        blk.read((i + 1) * BLOCK, buf.subarray((i + 1) * BLOCK, (i + 2) * BLOCK)),
      );
      ac.abort();
      await assert.rejects(aborted, { code: 'ABORT_ERR' });
      await Promise.all(others);
    }),
  );
});

describe('NetOptions.pollMicros', () => {
  test('bad values are TypeError/RangeError before anything opens', T, async () => {
    await failsWith(() => openNet('mock:net', { pollMicros: -1 }), RangeError, 'pollMicros -1');
    await failsWith(() => openNet('mock:net', { pollMicros: 1_000_001 }), RangeError, 'pollMicros 1000001');
    await failsWith(() => openNet('mock:net', { pollMicros: '10' as unknown as number }), TypeError, "pollMicros '10'");
  });

  for (const packed of [false, true])
    test(`frames over 2 pairs (${packed ? 'packed' : 'split'}) come back byte-exact, each once`, T, async () => {
      const net = await openNet('mock:net', {
        pollMicros: 500,
        packed,
        queuePairs: 2,
        queueSize: 64,
        mock: { queuePairs: 2 },
      });
      try {
        const rng = new Rng(packed ? 9 : 10);
        for (let round = 0; round < 20; round++) {
          const frames = Array.from({ length: 48 }, () => rng.bytes(60 + rng.below(1455)));
          const sent = new Set(frames.map((f) => Buffer.from(f).toString('hex')));
          const back = Array.from({ length: frames.length }, () => net.receive());
          await net.sendBatch(frames);
          for (const f of await Promise.all(back))
            assert.ok(sent.delete(Buffer.from(f).toString('hex')), 'a frame not sent, or twice');
          assert.equal(sent.size, 0);
        }
        const total = net.stats().reduce((n, s) => n + s.rxFrames, 0);
        assert.equal(total, 20 * 48);
      } finally {
        await net.close();
      }
    });
});

// Several request queues with more requests than the rings hold, and close() in the middle of that:
// every request settles, and pending ones keep the process alive.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VdpaError, openBlk } from '../../lib';
import { describeExit, runChild } from '../helpers/child';
import { Rng, TEST_TIMEOUT, assertBytes } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT + 5000 };

describe('multiqueue', () => {
  test('4 queues of 4, 200 reads: all complete with the right bytes', T, async () => {
    for (const packed of [false, true]) {
      const blk = await openBlk('mock:blk', {
        numQueues: 4,
        queueSize: 4,
        packed,
        mock: { numQueues: 4, capacity: 4 << 20 },
      });
      try {
        const disk = new Rng().bytes(200 * 4096);
        await blk.write(0, disk);
        const bufs = Array.from({ length: 200 }, (_, i) => (i % 2 ? blk.allocBuffer(4096) : new Uint8Array(4096)));
        await Promise.all(bufs.map((b, i) => blk.read(i * 4096, b)));
        bufs.forEach((b, i) => assertBytes(b, disk.subarray(i * 4096, (i + 1) * 4096), `read ${i}`));
        // And a batch over the same small rings.
        const ops = bufs.map((buffer, i) => ({ op: 'read' as const, offset: i * 4096, buffer }));
        await blk.batch(ops);
      } finally {
        await blk.close();
      }
    }
  });

  test('the requests keep the process alive until they are all settled (child process)', T, async () => {
    const r = await runChild(
      `const { openBlk } = require(LIB);
       openBlk('mock:blk', { numQueues: 4, queueSize: 4, mock: { numQueues: 4 } }).then((blk) => {
         let settled = 0;
         for (let i = 0; i < 200; i++)
           blk.read(i * 4096, new Uint8Array(4096)).finally(() => {
             if (++settled === 200) console.log('all settled');
           });
         // No await, no timer: only the device's requests keep the loop running.
       });`,
      TEST_TIMEOUT,
    );
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /all settled/, `the process exited with requests pending: ${describeExit(r)}`);
  });

  test('2 queues of 8, 100 reads, close(): every request settles, none stays pending', T, async () => {
    for (let round = 0; round < 20; round++) {
      const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 8, mock: { numQueues: 2 } });
      const reqs = Array.from({ length: 100 }, (_, i) =>
        blk.read((i % 64) * 4096, i % 2 ? blk.allocBuffer(4096) : new Uint8Array(4096)),
      );
      // Close after a few completions, with most requests still waiting for a slot.
      if (round % 2) await new Promise((r) => setImmediate(r));
      const closed = blk.close();
      const results = await Promise.race([
        Promise.allSettled(reqs),
        new Promise<'hung'>((r) => setTimeout(() => r('hung'), 3000).unref()),
      ]);
      assert.notEqual(results, 'hung', `round ${round}: requests stayed pending after close()`);
      await closed;
      for (const r of results as PromiseSettledResult<void>[]) {
        if (r.status === 'fulfilled') continue;
        assert.ok(r.reason instanceof VdpaError, String(r.reason));
        assert.equal(r.reason.code, 'ECANCELED', r.reason.message);
      }
    }
  });
});

// Regression: a packed-ring used descriptor with the wrong wrap counter (fault used-idx-jump) that
// the device publishes while the driver is between draining and re-arming interrupts. The device
// sees no reason to interrupt (the driver's event position is behind it), so the driver's own check
// after re-arming must notice the foreign flags; if it only looks for a used descriptor it goes to
// sleep and the requests hang (until requestTimeout here, so a hang shows as ETIMEDOUT).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VdpaError, openBlk } from '../../lib';
import { drainPairs, popChain, submit } from './loopback';
import { newPacked } from './packed-loopback';

const RUNS = 200;

describe('packed ring: used-idx-jump never hangs', { timeout: 120_000 }, () => {
  it('re-arming interrupts reports foreign flags published after the last drain', () => {
    const lb = newPacked(8, true, 0);
    const chains = [1, 2, 3].map((t) => ({ token: t, segs: [{ offset: t * 64, length: 8, writable: true }] }));
    assert.equal(submit(lb, chains), 3);
    lb.publish();
    const heads = chains.map(() => popChain(lb).head);
    // A good completion the driver was interrupted for and drains...
    lb.devicePush(heads[0], 1);
    assert.equal(lb.devicePublish(), true, 'the driver asked for the first used descriptor');
    assert.deepEqual(drainPairs(lb), [[1, 1]]);
    // ...then, before the driver re-arms, a used descriptor with the other lap's wrap flags. The
    // driver's event position is still the first slot, so the device sends no interrupt.
    lb.deviceJumpUsedIdx(8);
    lb.devicePush(heads[1], 1);
    assert.equal(lb.devicePublish(), false, 'no interrupt for it');
    assert.equal(lb.enableInterrupts(), true, 'the driver must look again instead of sleeping');
    assert.equal(lb.drain(), 0);
    assert.equal(lb.state().broken, true);
    assert.match(lb.state().reason, /neither an available nor a used descriptor/);
  });

  it(`every request settles with EPROTO, ${RUNS} runs`, async () => {
    const codes = new Map<string, number>();
    for (let run = 0; run < RUNS; run++) {
      const blk = await openBlk('mock:blk', {
        queueSize: 8,
        packed: true,
        requestTimeout: 1000,
        mock: { fault: 'used-idx-jump', faultAfter: 1 + (run % 4) },
      });
      try {
        const buf = blk.allocBuffer(512);
        // Submissions spread over event-loop turns, so good completions and the bad one land in
        // different device batches and the driver is often draining when the bad one arrives.
        const reqs: Promise<void>[] = [];
        for (let i = 0; i < 7; i++) {
          const req = blk.write(i * 512, buf);
          req.catch(() => {}); // handled below, after the last submission
          reqs.push(req);
          if (i % 2 === run % 2) await new Promise((r) => setImmediate(r));
        }
        const results = await Promise.allSettled(reqs);
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        assert.ok(failed.length > 0, `run ${run}: the fault breaks at least one request`);
        for (const r of failed) {
          const e = r.reason as unknown;
          assert.ok(e instanceof VdpaError, `run ${run}: ${String(e)}`);
          codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
          assert.equal(e.code, 'EPROTO', `run ${run}: ${e.message}`);
        }
      } finally {
        await blk.close();
      }
    }
    assert.deepEqual([...codes.keys()], ['EPROTO']);
  });
});

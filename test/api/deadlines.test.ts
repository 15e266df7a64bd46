// requestTimeout: a device that stops answering fails its requests with ETIMEDOUT instead of
// leaving them pending forever (the mock's 'stall' fault completes nothing after faultAfter).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VdpaError, openBlk, openDevice, openNet } from '../../lib';
import { describeExit, runChild } from '../helpers/child';
import { TEST_TIMEOUT, failsWith, rejectsWithCode, track } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
const STALL = { fault: 'stall', faultAfter: 2 };
type Any = never;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('requestTimeout', () => {
  test('defaults to 30 s; bad values are TypeError/RangeError', T, async () => {
    const dev = await openDevice('mock:blk');
    assert.equal(dev.requestTimeout, 30_000);
    await dev.close();
    for (const v of [-1, 1.5, 2 ** 31, NaN])
      await failsWith(() => openBlk('mock:blk', { requestTimeout: v }), RangeError, `requestTimeout ${v}`);
    await failsWith(() => openBlk('mock:blk', { requestTimeout: '100' as Any }), TypeError, 'requestTimeout string');
  });

  test('a stalled request rejects ETIMEDOUT; the device emits timeout; later requests fail too', T, async () => {
    const timeout = 100;
    const blk = await openBlk('mock:blk', { requestTimeout: timeout, queueSize: 8, mock: STALL });
    try {
      await blk.write(0, new Uint8Array(512));
      await blk.read(0, new Uint8Array(512)); // the two completions before the stall
      const events: VdpaError[] = [];
      blk.device.on('timeout', (e: VdpaError) => events.push(e));
      const started = Date.now();
      // More than the ring holds, on plain and DMA memory: some wait for a slot, some for a bounce chunk.
      const reqs: Promise<unknown>[] = Array.from({ length: 300 }, (_, i) =>
        blk.read(0, i % 3 ? new Uint8Array(128 << 10) : blk.allocBuffer(4096)),
      );
      reqs.push(blk.flush(), blk.getId(), blk.discard(0, 4096));
      const results = await Promise.allSettled(reqs);
      const elapsed = Date.now() - started;
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.equal((r.reason as VdpaError).code, 'ETIMEDOUT', String(r.reason));
      }
      assert.ok(elapsed >= timeout, `rejected after ${elapsed} ms, before the ${timeout} ms deadline`);
      assert.ok(elapsed < timeout + 1000, `rejected only after ${elapsed} ms`);
      assert.equal(events.length, 1, 'one timeout event');
      assert.equal(events[0]?.code, 'ETIMEDOUT');
      assert.equal(events[0]?.errno, -110);
      assert.match(events[0]?.message ?? '', /requestTimeout/);
      assert.equal(typeof events[0]?.hint, 'string');
      // Until close(), every new request fails the same way, without waiting.
      await rejectsWithCode(blk.write(0, new Uint8Array(512)), 'ETIMEDOUT', 'write after the timeout');
      await rejectsWithCode(blk.batch([{ op: 'read', offset: 0, buffer: new Uint8Array(512) }]), 'ETIMEDOUT');
      await blk.close();
      await rejectsWithCode(blk.read(0, new Uint8Array(512)), 'EBADF', 'read after close');
      const stats = blk.bounceStats;
      assert.equal(stats.free, stats.chunks, 'every bounce chunk is back after close');
    } finally {
      await blk.close();
    }
  });

  test('net: a stalled send rejects ETIMEDOUT, and so does a waiting receive', T, async () => {
    const net = await openNet('mock:net', { requestTimeout: 80, queueSize: 16, mock: { fault: 'stall' } });
    try {
      const rx = rejectsWithCode(net.receive(), 'ETIMEDOUT', 'receive');
      await rejectsWithCode(net.send(new Uint8Array(60)), 'ETIMEDOUT', 'send');
      await rejectsWithCode(net.sendBatch(Array.from({ length: 40 }, () => new Uint8Array(60))), 'ETIMEDOUT');
      await rx;
      await rejectsWithCode(net.receive(), 'ETIMEDOUT', 'receive after the timeout');
    } finally {
      await net.close();
    }
  });

  test('requestTimeout 0: no deadline', T, async () => {
    const blk = await openBlk('mock:blk', { requestTimeout: 0, mock: { fault: 'stall' } });
    const p = blk.read(0, new Uint8Array(512));
    const s = track(p);
    await sleep(150);
    assert.equal(s.state(), 'pending');
    await blk.close();
    await rejectsWithCode(p, 'ECANCELED', 'stalled read at close');
  });

  test('a healthy busy device does not time out', T, async () => {
    // The deadline is short next to the run, but far above what one read takes even on a loaded
    // machine under the sanitizers: a tick that fired wrongly would fail the run, a slow read would not.
    const blk = await openBlk('mock:blk', { requestTimeout: 400, numQueues: 2, queueSize: 16, mock: { numQueues: 2 } });
    try {
      const until = Date.now() + 1200;
      const buf = new Uint8Array(64 << 10);
      while (Date.now() < until) await Promise.all(Array.from({ length: 64 }, (_, i) => blk.read(i * buf.length, buf)));
      await sleep(600); // idle longer than the deadline: nothing may fire
      await blk.write(0, buf);
    } finally {
      await blk.close();
    }
  });

  test('a script with a stalled request settles it at the deadline and exits by itself', T, async () => {
    const r = await runChild(
      `const { openBlk } = require(LIB);
       openBlk('mock:blk', { requestTimeout: 200, mock: { fault: 'stall' } }).then((blk) => {
         const t0 = Date.now();
         blk.read(0, new Uint8Array(4096)).then(
           () => console.log('resolved'),
           (e) => console.log('rejected', e.code, Date.now() - t0 >= 200),
         );
       });`,
      TEST_TIMEOUT - 2000,
    );
    assert.equal(r.timedOut, false, describeExit(r));
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /rejected ETIMEDOUT true/, describeExit(r));
  });
});

// Open and close off the JS thread: what close() delivers and cancels, that it runs once, that the
// event loop stays live meanwhile (timers keep firing while close() or open is pending: counted, not
// timed, so a loaded machine cannot fail it), and that workers and collected devices tear down safely.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VdpaError, openBlk, openDevice, openNet } from '../../lib';
import { describeExit, runChild } from '../helpers/child';
import { TEST_TIMEOUT, collectGarbage } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT + 5000 };
/**
 * Runs `body` and counts how often a 1 ms interval fired before it settled. Work done on the JS
 * thread inside `body` lets no tick through (its promise settles in the microtasks right after), so
 * a count of 2 or more shows the loop was free while `body` waited. Ordering, not timing.
 */
async function ticksWhile<R>(body: () => Promise<R>): Promise<{ ticks: number; result: R }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const result = await body();
    return { ticks, result };
  } finally {
    clearInterval(timer);
  }
}

describe('close() and open off the JS thread', () => {
  test('completions that arrive while closing are successes', T, async () => {
    // The mock holds each batch back 100 ms: the reads complete while close() waits for them.
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20, completionDelayMs: 100 } });
    const reads = Array.from({ length: 8 }, (_, i) => blk.read(i * 4096, new Uint8Array(4096)));
    await new Promise((r) => setTimeout(r, 10)); // submitted, not yet completed
    const { ticks } = await ticksWhile(() => blk.close());
    const settled = await Promise.allSettled(reads);
    assert.deepEqual(
      settled.map((r) => r.status),
      reads.map(() => 'fulfilled'),
      'every read the device completed while closing resolves',
    );
    assert.ok(ticks >= 2, `the event loop ran ${ticks} timer ticks while closing`);
    await assert.rejects(blk.read(0, new Uint8Array(512)), (e: VdpaError) => e.code === 'EBADF');
  });

  test('a stalled device: close() keeps the loop live, what it holds rejects ECANCELED', T, async () => {
    const blk = await openBlk('mock:blk', { requestTimeout: 0, mock: { capacity: 1 << 20, fault: 'stall' } });
    const reads = Array.from({ length: 4 }, (_, i) => blk.read(i * 4096, new Uint8Array(4096)));
    await new Promise((r) => setTimeout(r, 10));
    const started = performance.now();
    const { ticks } = await ticksWhile(() => blk.close());
    const took = performance.now() - started;
    for (const r of await Promise.allSettled(reads)) {
      assert.equal(r.status, 'rejected');
      if (r.status === 'rejected') assert.equal((r.reason as VdpaError).code, 'ECANCELED');
    }
    // A lower bound only: timers never fire early, however loaded the machine.
    assert.ok(took >= 900, `close() waited for the chains in flight (its 1 s budget), took ${took.toFixed(0)} ms`);
    assert.ok(ticks >= 2, `the event loop ran ${ticks} timer ticks during a close() of ${took.toFixed(0)} ms`);
  });

  /** A stalled mock:blk holding one read, whose close() waits its whole budget (1 s): the yardstick below. */
  async function stalledForOneSecond(): Promise<{ close: () => Promise<void>; read: Promise<unknown> }> {
    const blk = await openBlk('mock:blk', { requestTimeout: 0, mock: { capacity: 1 << 20, fault: 'stall' } });
    const read = blk.read(0, new Uint8Array(4096)).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 10));
    return { close: () => blk.close(), read };
  }

  /** Which of two promises settles first (ordering, not timing: both wait on the same loaded machine). */
  function first(a: Promise<unknown>, b: Promise<unknown>): Promise<'a' | 'b'> {
    return Promise.race([a.then(() => 'a' as const), b.then(() => 'b' as const)]);
  }

  test('requestTimeout shorter than 1 s bounds the wait of close()', T, async () => {
    const yardstick = await stalledForOneSecond();
    const blk = await openBlk('mock:blk', { requestTimeout: 200, mock: { capacity: 1 << 20, fault: 'stall' } });
    const read = blk.read(0, new Uint8Array(4096));
    await new Promise((r) => setTimeout(r, 10));
    // The yardstick's close starts 50 ms earlier: with the same budget it would end first.
    const slow = yardstick.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await first(blk.close(), slow), 'a', 'close() with requestTimeout 200 outlasted the 1 s budget');
    await assert.rejects(read, (e: VdpaError) => e.code === 'ECANCELED');
    await slow;
    assert.equal(((await yardstick.read) as VdpaError).code, 'ECANCELED');
  });

  test('closing a net device does not wait for its receive buffers', T, async () => {
    const net = await openNet('mock:net');
    const yardstick = await stalledForOneSecond();
    const slow = yardstick.close();
    await new Promise((r) => setTimeout(r, 50)); // as above: a net close that waited 1 s would end second
    assert.equal(await first(net.close(), slow), 'a', 'closing the net device waited as long as a 1 s budget');
    await slow;
    await yardstick.read;
  });

  test('close() twice returns the same promise', T, async () => {
    const dev = await openDevice('mock:blk');
    const first = dev.close();
    assert.equal(dev.close(), first);
    await first;
    assert.equal(dev.close(), first);
    assert.equal(dev.closed, true);
  });

  test('opening keeps the event loop live', T, async () => {
    const { ticks, result } = await ticksWhile(async () => {
      const devices = [];
      for (let i = 0; i < 10; i++) devices.push(await openBlk('mock:blk', { mock: { capacity: 1 << 20 } }));
      for (const d of devices) await d.close();
      return devices.length;
    });
    assert.equal(result, 10);
    assert.ok(ticks >= 2, `the event loop ran ${ticks} timer ticks while opening and closing 10 devices`);
  });

  test('a device dropped while its close runs on the threadpool is collected safely', T, async () => {
    let closes: Promise<void>[] = [];
    await (async () => {
      for (let i = 0; i < 4; i++) {
        const blk = await openBlk('mock:blk', { requestTimeout: 300, mock: { capacity: 1 << 20, fault: 'stall' } });
        void blk.read(0, new Uint8Array(4096)).catch(() => {});
        await new Promise((r) => setTimeout(r, 5));
        closes.push(blk.close());
      }
    })();
    for (let i = 0; i < 5; i++) {
      collectGarbage();
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(closes);
    closes = [];
    collectGarbage();
  });

  test('worker.terminate() with requests in flight: the process survives and exits 0', T, async () => {
    const r = await runChild(
      `const { Worker } = require('node:worker_threads');
       const w = new Worker(\`
         const { parentPort } = require('node:worker_threads');
         const { openBlk } = require(\${JSON.stringify(LIB)});
         openBlk('mock:blk', { mock: { capacity: 1 << 20, completionDelayMs: 5 } }).then((blk) => {
           for (let i = 0; i < 32; i++) blk.read(0, new Uint8Array(4096)).catch(() => {});
           parentPort.postMessage('busy');
           setInterval(() => { for (let i = 0; i < 8; i++) blk.read(0, new Uint8Array(512)).catch(() => {}); }, 1);
         });\`, { eval: true });
       w.on('message', () => setTimeout(() => w.terminate(), 30));
       w.on('exit', (code) => console.log('worker exit', code));`,
      TEST_TIMEOUT,
    );
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /worker exit 1/, describeExit(r));
    assert.doesNotMatch(r.stderr, /terminate called|Napi::Error/, describeExit(r));
  });

  test('process.exit() from a worker with requests in flight', T, async () => {
    const r = await runChild(
      `const { Worker } = require('node:worker_threads');
       const w = new Worker(\`
         const { openBlk } = require(\${JSON.stringify(LIB)});
         openBlk('mock:blk', { mock: { capacity: 1 << 20, completionDelayMs: 5 } }).then((blk) => {
           for (let i = 0; i < 32; i++) blk.read(0, new Uint8Array(4096)).catch(() => {});
           setTimeout(() => process.exit(3), 20);
         });\`, { eval: true });
       w.on('exit', (code) => console.log('worker exit', code));`,
      TEST_TIMEOUT,
    );
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /worker exit 3/, describeExit(r));
    assert.doesNotMatch(r.stderr, /terminate called|Napi::Error/, describeExit(r));
  });
});

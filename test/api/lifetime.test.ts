// Object lifetimes: buffers owned by the device, the event loop's references, worker threads,
// freeBuffer and close() detaching DMA views.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { VdpaError, openBlk } from '../../lib';
import { describeExit, runChild } from '../helpers/child';
import {
  LIB_PATH,
  Rng,
  TEST_TIMEOUT,
  assertBytes,
  assertFilled,
  rejectsWithCode,
  tick,
  track,
  collectGarbage,
} from '../helpers/util';

const T = { timeout: TEST_TIMEOUT + 5000 };
const CHILD_LIMIT = TEST_TIMEOUT;

/** The byte pattern the disk holds at `offset` (a function of the offset, so checks need no copy). */
function pattern(offset: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) new DataView(b.buffer).setUint32(i, (offset + i) ^ 0xa5a5a5a5, true);
  return b;
}

describe('lifetime', () => {
  test('buffers stay alive while the device owns them (gc with requests in flight)', T, async () => {
    const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 128, mock: { capacity: 16 << 20, numQueues: 2 } });
    try {
      const size = 16384;
      const n = 192;
      await blk.write(0, pattern(0, n * size));
      const weak: { ref: WeakRef<Uint8Array>; offset: number }[] = [];
      const done: Promise<unknown>[] = [];
      (() => {
        for (let i = 0; i < n; i++) {
          const buf = i % 2 ? blk.allocBuffer(size) : new Uint8Array(size);
          done.push(blk.read(i * size, buf));
          weak.push({ ref: new WeakRef(buf), offset: i * size });
        }
      })();
      collectGarbage();
      // Churn: other DMA buffers that could take the place of a region freed too early.
      const churn = Array.from({ length: 32 }, () => blk.allocBuffer(size).fill(0x5a));
      collectGarbage();
      await Promise.all(done);
      collectGarbage();
      for (const [i, c] of churn.entries()) assertFilled(c, 0x5a, `churn buffer ${i}`);
      let alive = 0;
      for (const w of weak) {
        const buf = w.ref.deref();
        if (!buf) continue;
        alive++;
        assertBytes(buf, pattern(w.offset, size), `buffer for offset ${w.offset}`);
      }
      assert.ok(alive >= 0);
    } finally {
      await blk.close();
    }
  });

  test('a stalled device keeps its buffers reachable until close()', T, async (t) => {
    const blk = await openBlk('mock:blk', { queueSize: 64, mock: { capacity: 16 << 20, fault: 'stall' } });
    t.after(() => blk.close());
    const weak: WeakRef<Uint8Array>[] = [];
    const states: ReturnType<typeof track>[] = [];
    const done: Promise<unknown>[] = [];
    (() => {
      for (let i = 0; i < 32; i++) {
        const buf = i % 2 ? blk.allocBuffer(4096) : new Uint8Array(4096);
        const p = blk.read(i * 4096, buf);
        done.push(p);
        states.push(track(p));
        weak.push(new WeakRef(buf));
      }
    })();
    // WeakRef targets are kept for the rest of the turn: collect after the turn ends.
    for (let i = 0; i < 3; i++) {
      await tick();
      collectGarbage();
    }
    const lost = weak.filter((w) => w.deref() === undefined).length;
    assert.equal(lost, 0, `${lost} buffers were collected while the device held them`);
    assert.ok(states.every((s) => s.state() === 'pending'));
    await blk.close();
    for (const p of done) await rejectsWithCode(p, 'ECANCELED', 'stalled read at close');
  });

  test('a script with an idle open device exits by itself', T, async () => {
    const r = await runChild(
      `const { openBlk, openNet } = require(LIB);
       (async () => {
         const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
         const net = await openNet('mock:net');
         await blk.write(0, new Uint8Array(4096).fill(7));
         console.log('wrote', net.mtu);
       })();`,
      CHILD_LIMIT,
    );
    assert.equal(r.timedOut, false, `the process did not exit: ${describeExit(r)}`);
    assert.equal(r.signal, null, describeExit(r));
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /wrote 1500/);
  });

  test('a pending request keeps the process alive until it is done (ref by default)', T, async () => {
    const r = await runChild(
      `const { openBlk } = require(LIB);
       openBlk('mock:blk', { numQueues: 2, queueSize: 128, mock: { capacity: 64 << 20, numQueues: 2 } }).then((blk) => {
         // Fewer chains than the queues hold: this is about the event loop, not about a full ring.
         const data = blk.allocBuffer(1 << 20).fill(9);
         const ps = [];
         for (let i = 0; i < 32; i++) ps.push(blk.write(i << 20, data));
         Promise.all(ps)
           .then(() => blk.read(31 << 20, new Uint8Array(65536)))
           .then(() => new Promise((r) => setImmediate(r)))
           .then(() => blk.read(0, blk.allocBuffer(1 << 20)))
           .then(() => console.log('all done'));
         // No await, no timer: only the device's requests keep the loop running.
       });`,
      CHILD_LIMIT,
    );
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /all done/, `the process exited before the requests finished: ${describeExit(r)}`);
  });

  test('unref(): a request on a stalled device does not keep the process alive', T, async () => {
    const r = await runChild(
      `const { openBlk } = require(LIB);
       openBlk('mock:blk', { mock: { capacity: 1 << 20, fault: 'stall' } }).then((blk) => {
         blk.unref();
         blk.read(0, new Uint8Array(4096)).then(() => console.log('settled'), () => console.log('settled'));
         console.log('started');
       });`,
      CHILD_LIMIT,
    );
    assert.equal(r.timedOut, false, `an unref'd device kept the process alive: ${describeExit(r)}`);
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /started/);
    assert.doesNotMatch(r.stdout, /settled/);
  });

  test('a worker thread and the main thread use devices at once', T, async () => {
    const workerCode = `
      const { parentPort } = require('node:worker_threads');
      const { openBlk } = require(${JSON.stringify(LIB_PATH)});
      (async () => {
        const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 64, mock: { capacity: 8 << 20, numQueues: 2 } });
        let good = 0;
        for (let round = 0; round < 20; round++) {
          const data = new Uint8Array(65536).map((_, i) => (i * 7 + round) & 255);
          const dma = blk.allocBuffer(65536);
          await blk.write(round * 65536, data);
          await blk.read(round * 65536, dma);
          if (Buffer.compare(dma, data) === 0) good++;
        }
        await blk.close();
        parentPort.postMessage(good);
      })().catch((e) => parentPort.postMessage(String(e)));`;
    const worker = new Worker(workerCode, { eval: true });
    const result = new Promise<unknown>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 64, mock: { capacity: 8 << 20, numQueues: 2 } });
    try {
      const rng = new Rng();
      for (let round = 0; round < 20; round++) {
        const data = rng.bytes(65536);
        await blk.write(round * 65536, data);
        const back = new Uint8Array(65536);
        await blk.read(round * 65536, back);
        assertBytes(back, data, `main thread round ${round}`);
      }
    } finally {
      await blk.close();
    }
    assert.equal(await result, 20, 'all worker rounds match');
    assert.equal(await exited, 0, 'the worker exits cleanly');
  });

  test('a worker that leaves its device open exits cleanly (child process)', T, async () => {
    const r = await runChild(
      `const { Worker } = require('node:worker_threads');
       const w = new Worker(\`
         const { openBlk } = require(\${JSON.stringify(LIB)});
         openBlk('mock:blk', { mock: { capacity: 1 << 20 } }).then((blk) => blk.write(0, new Uint8Array(4096)));\`, { eval: true });
       w.on('exit', (code) => console.log('worker exit', code));`,
      CHILD_LIMIT,
    );
    assert.equal(r.code, 0, describeExit(r));
    assert.match(r.stdout, /worker exit 0/, describeExit(r));
  });

  test('freeBuffer detaches the view; a freed buffer fails cleanly; close() detaches', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      const buf = blk.allocBuffer(8192);
      const sub = buf.subarray(4096);
      blk.device.freeBuffer(buf);
      assert.equal(buf.length, 0);
      assert.equal(buf.byteLength, 0);
      assert.equal(sub.length, 0, 'views of a freed buffer are detached too');
      for (const [what, p] of [
        ['read', () => blk.read(0, buf)],
        ['write', () => blk.write(0, buf)],
        ['subarray read', () => blk.read(0, sub)],
        ['batch', () => blk.batch([{ op: 'write', offset: 0, buffer: buf }])],
      ] as const) {
        let err: unknown;
        try {
          await p();
        } catch (e) {
          err = e;
        }
        assert.ok(
          err instanceof RangeError || err instanceof TypeError || err instanceof VdpaError,
          `${what}: ${String(err)}`,
        );
      }
      assert.throws(() => blk.device.freeBuffer(buf), TypeError, 'freeing twice');
      assert.throws(() => blk.device.freeBuffer(new Uint8Array(16)), TypeError, 'freeing plain memory');
      const other = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
      const foreign = other.allocBuffer(4096);
      assert.throws(() => blk.device.freeBuffer(foreign), TypeError, "freeing another device's buffer");
      await other.close();
      assert.equal(foreign.length, 0, 'close() detaches');
      // The device still works.
      const ok = blk.allocBuffer(4096).fill(3);
      await blk.write(0, ok);
      const live = [blk.allocBuffer(4096), blk.allocBuffer(1 << 20)];
      await blk.close();
      for (const b of [ok, ...live]) assert.equal(b.length, 0, 'close() detaches allocBuffer views');
    } finally {
      await blk.close();
    }
  });

  test('freeBuffer with a request in flight does not crash the process (child process)', T, async () => {
    const r = await runChild(
      `const { openBlk } = require(LIB);
       (async () => {
         const blk = await openBlk('mock:blk', { mock: { capacity: 4 << 20 } });
         const outcomes = [];
         for (let i = 0; i < 20; i++) {
           const buf = blk.allocBuffer(1 << 20);
           const p = blk.read(0, buf).then(() => 'resolved', (e) => e.name + ':' + (e.code || ''));
           try { blk.device.freeBuffer(buf); outcomes.push('freed'); } catch (e) { outcomes.push('refused ' + e.name); }
           outcomes.push(await p);
         }
         await blk.close();
         console.log(JSON.stringify(outcomes));
       })();`,
      CHILD_LIMIT,
    );
    assert.equal(r.signal, null, describeExit(r));
    assert.equal(r.code, 0, describeExit(r));
  });
});

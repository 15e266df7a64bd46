// Mock fault injection: how the library defends itself against a device that breaks the rules.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VdpaError, mockFaults, openBlk, openNet, type BlkDevice } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, assertFilled, rejectsWithCode, tick, track } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
const OPTS = { numQueues: 2, queueSize: 64 };
const MOCK = { capacity: 16 << 20, numQueues: 2 };
const FAULT_AFTER = 4;

/** FAULT_AFTER single-chain requests that must succeed: 2 writes, then reading both back. */
async function healthyPrefix(blk: BlkDevice, rng: Rng): Promise<void> {
  const a = rng.bytes(4096);
  const b = rng.bytes(4096);
  await blk.write(0, a);
  await blk.write(8192, b);
  const back = new Uint8Array(4096);
  await blk.read(0, back);
  assertBytes(back, a, 'read before the fault');
  await blk.read(8192, back);
  assertBytes(back, b, 'second read before the fault');
}

describe('mock faults', () => {
  test('every fault is listed', () => {
    assert.deepEqual([...mockFaults].sort(), [
      'bad-used-id',
      'long-used-len',
      'no-features-ok',
      'reset-in-flight',
      'stall',
      'used-idx-jump',
    ]);
    assert.ok(Object.isFrozen(mockFaults));
  });

  const violations: [string, RegExp][] = [
    ['bad-used-id', /used id/],
    ['long-used-len', /bytes written|writable bytes/],
    ['used-idx-jump', /used index/],
  ];
  for (const [fault, reason] of violations) {
    test(`${fault}: requests fail with EPROTO, later ones too, other memory untouched`, T, async () => {
      const rng = new Rng();
      const blk = await openBlk('mock:blk', { ...OPTS, mock: { ...MOCK, fault, faultAfter: FAULT_AFTER } });
      try {
        await healthyPrefix(blk, rng);
        // Bystanders: memory the device is never given.
        const bystander = blk.allocBuffer(8192).fill(0x3c);
        const plainWhole = new Uint8Array(3 * 4096).fill(0xc3);
        const dma = blk.allocBuffer(8 * 4096).fill(0x11);
        const reqs: Promise<unknown>[] = [];
        for (let i = 0; i < 8; i++) reqs.push(blk.read(0, dma.subarray(i * 4096, (i + 1) * 4096)));
        reqs.push(blk.read(0, plainWhole.subarray(4096, 8192)));
        reqs.push(blk.write(16384, rng.bytes(4096)));
        const results = await Promise.allSettled(reqs);
        const failed = results.filter((r) => r.status === 'rejected');
        assert.ok(failed.length > 0, 'at least one request fails');
        for (const r of failed) {
          const e = (r as PromiseRejectedResult).reason as unknown;
          assert.ok(e instanceof VdpaError, String(e));
          assert.equal(e.code, 'EPROTO', e.message);
          assert.equal(e.errno, -71);
          assert.match(e.message, reason);
          assert.match(e.syscall, /virtqueue/);
        }
        assertFilled(bystander, 0x3c, 'a DMA buffer the device never got');
        assertFilled(plainWhole.subarray(0, 4096), 0xc3, 'bytes before a plain read target');
        assertFilled(plainWhole.subarray(8192), 0xc3, 'bytes after a plain read target');
        // Every queue breaks sooner or later; after that nothing hangs and nothing succeeds.
        const later = await Promise.allSettled(Array.from({ length: 8 }, () => blk.read(0, new Uint8Array(512))));
        let rejected = 0;
        for (const r of later) if (r.status === 'rejected') rejected++;
        assert.ok(rejected > 0, 'later requests are refused');
        for (const r of later)
          if (r.status === 'rejected') assert.equal((r.reason as VdpaError).code, 'EPROTO', String(r.reason));
      } finally {
        await blk.close();
      }
    });
  }

  test('bad-used-id on net: send and receive fail with EPROTO', T, async () => {
    const net = await openNet('mock:net', { queueSize: 64, mock: { fault: 'bad-used-id' } });
    try {
      const f = new Uint8Array(60);
      const rx = rejectsWithCode(net.receive(), 'EPROTO', 'receive');
      await rejectsWithCode(net.send(f), 'EPROTO', 'send');
      await rx;
      await rejectsWithCode(net.send(f), 'EPROTO', 'later send');
    } finally {
      await net.close();
    }
  });

  test('stall: requests stay pending until close() cancels them', T, async (t) => {
    const rng = new Rng();
    const blk = await openBlk('mock:blk', { ...OPTS, mock: { ...MOCK, fault: 'stall', faultAfter: FAULT_AFTER } });
    t.after(() => blk.close()); // also when the test times out
    let closed = false;
    try {
      await healthyPrefix(blk, rng);
      const dma = blk.allocBuffer(4096);
      const reqs = [
        blk.read(0, new Uint8Array(4096)),
        blk.write(4096, rng.bytes(4096)),
        blk.read(0, dma),
        blk.flush(),
        blk.getId(),
      ];
      const states = reqs.map((p) => track<unknown>(p));
      for (let i = 0; i < 20; i++) await tick();
      assert.deepEqual(
        states.map((s) => s.state()),
        reqs.map(() => 'pending'),
        'a stalled device completes nothing',
      );
      await blk.close();
      closed = true;
      for (const p of reqs) await rejectsWithCode(p, 'ECANCELED', 'stalled request at close');
    } finally {
      if (!closed) await blk.close();
    }
  });

  test('no-features-ok: openBlk and openNet reject with a FEATURES_OK VdpaError', T, async () => {
    for (const open of [
      () => openBlk('mock:blk', { mock: { fault: 'no-features-ok' } }),
      () => openNet('mock:net', { mock: { fault: 'no-features-ok' } }),
    ]) {
      let err: unknown;
      try {
        await open();
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof VdpaError, `expected a VdpaError, got ${String(err)}`);
      assert.match(err.syscall, /FEATURES_OK/, `syscall '${err.syscall}': ${err.message}`);
      assert.equal(typeof err.path, 'string');
    }
  });
});

// AbortSignal on every request: an aborted request rejects at once with an AbortError shaped like
// Node core's; one already aborted never reaches the device; what the device holds stays pinned.
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, test } from 'node:test';
import { AbortError, VdpaError, openBlk, openNet } from '../../lib';
import { TEST_TIMEOUT, assertFilled, failsWith, rejectsWithCode, tick, track } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
type Any = never;

async function rejectsAbort(p: Promise<unknown>, reason: unknown, what: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof AbortError, `${what}: ${String(e)}`);
    assert.equal(e.name, 'AbortError');
    assert.equal(e.code, 'ABORT_ERR');
    assert.equal(e.cause, reason, `${what}: cause is the signal's reason`);
    return;
  }
  assert.fail(`${what}: resolved`);
}

describe('AbortSignal', () => {
  test('an already aborted signal rejects every request before anything is submitted', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    const net = await openNet('mock:net');
    try {
      await blk.write(0, new Uint8Array(4096).fill(1));
      const reason = new Error('stop');
      const signal = AbortSignal.abort(reason);
      const data = new Uint8Array(4096).fill(2);
      const into = new Uint8Array(4096).fill(3);
      const dma = blk.allocBuffer(4096).fill(4);
      for (const [what, p] of [
        ['read', () => blk.read(0, into, { signal })],
        ['read dma', () => blk.read(0, dma, { signal })],
        ['write', () => blk.write(0, data, { signal })],
        ['batch', () => blk.batch([{ op: 'write', offset: 0, buffer: data }], { signal })],
        ['flush', () => blk.flush({ signal })],
        ['discard', () => blk.discard(0, 4096, { signal })],
        ['writeZeroes', () => blk.writeZeroes(0, 4096, { signal })],
        ['getId', () => blk.getId({ signal })],
        ['send', () => net.send(new Uint8Array(60), { signal })],
        ['sendBatch', () => net.sendBatch([new Uint8Array(60)], { signal })],
        ['receive', () => net.receive({ signal })],
      ] as const) {
        const e = await failsWith(p, AbortError, what);
        assert.equal((e as AbortError).cause, reason, what);
      }
      const it = net.frames({ signal });
      await rejectsAbort(it.next(), reason, 'frames()');
      for (let i = 0; i < 5; i++) await tick();
      assertFilled(into, 3, 'the aborted read wrote nothing');
      assertFilled(dma, 4, 'the aborted DMA read wrote nothing');
      const back = new Uint8Array(4096);
      await blk.read(0, back);
      assertFilled(back, 1, 'the aborted write and zeroing never reached the disk');
      await assert.rejects(
        net.receive({ signal: AbortSignal.timeout(30) }),
        (e: unknown) => e instanceof AbortError,
        'nothing was sent: nothing comes back',
      );
    } finally {
      await blk.close();
      await net.close();
    }
  });

  test('a signal that is not an AbortSignal is a TypeError', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      await failsWith(() => blk.read(0, new Uint8Array(512), { signal: {} as Any }), TypeError, 'signal {}');
      await failsWith(() => blk.flush('x' as Any), TypeError, 'options a string');
      await blk.read(0, new Uint8Array(512), {});
      await blk.read(0, new Uint8Array(512), { signal: undefined });
    } finally {
      await blk.close();
    }
  });

  test('abort after submission: rejects at once; the buffer stays pinned until close()', T, async () => {
    const blk = await openBlk('mock:blk', { queueSize: 4, mock: { capacity: 1 << 20, fault: 'stall' } });
    try {
      const dma = blk.allocBuffer(4096);
      const ac = new AbortController();
      const plain = blk.read(0, new Uint8Array(65536), { signal: ac.signal });
      const zero = blk.read(0, dma, { signal: ac.signal });
      // More than the ring holds: these wait for a slot, not for the device.
      const queued = Array.from({ length: 6 }, () => blk.read(0, new Uint8Array(512), { signal: ac.signal }));
      const other = track(blk.read(0, new Uint8Array(512)));
      await tick();
      const reason = new Error('user gave up');
      ac.abort(reason);
      await rejectsAbort(plain, reason, 'bounce read');
      await rejectsAbort(zero, reason, 'DMA read');
      for (const p of queued) await rejectsAbort(p, reason, 'read waiting for a slot');
      assert.equal(other.state(), 'pending', 'a request without the signal is not affected');
      assert.throws(
        () => blk.device.freeBuffer(dma),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBUSY' && e.syscall === 'freeBuffer',
        'the device still holds the aborted DMA read',
      );
      const s = blk.bounceStats;
      assert.ok(s.free < s.chunks, 'the aborted bounce read keeps its chunk');
      assert.equal(getEventListeners(ac.signal, 'abort').length, 0, 'listeners are removed');
      await blk.close();
      assert.equal(blk.bounceStats.free, blk.bounceStats.chunks, 'reset: every chunk is back');
    } finally {
      await blk.close();
    }
  });

  test('an aborted read does not write its buffer when the device completes it later', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      await blk.write(0, new Uint8Array(65536).fill(0x5a));
      for (let i = 0; i < 20; i++) {
        const into = new Uint8Array(65536).fill(0xee);
        const ac = new AbortController();
        const p = blk.read(0, into, { signal: ac.signal });
        ac.abort();
        await assert.rejects(p, AbortError);
        for (let j = 0; j < 3; j++) await tick();
        assertFilled(into, 0xee, `round ${i}: the caller's buffer after the abort`);
      }
      // The device returns the last aborted reads in its own time (a loaded machine may take a while):
      // wait for it, bounded, then every chunk must be back in the pool.
      for (let waited = 0; blk.bounceStats.free < blk.bounceStats.chunks && waited < 5000; waited += 10)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(blk.bounceStats.free, blk.bounceStats.chunks, 'completed aborted reads return their chunks');
    } finally {
      await blk.close();
    }
  });

  test('signals used by settled requests keep no listeners', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      const ac = new AbortController();
      const buf = new Uint8Array(4096);
      for (let i = 0; i < 200; i++) await blk.read(0, buf, { signal: ac.signal });
      await Promise.all(Array.from({ length: 200 }, () => blk.write(0, buf, { signal: ac.signal })));
      assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
    } finally {
      await blk.close();
    }
  });

  test('net: an aborted receive gives its frame to the next reader; frames() throws', T, async () => {
    const net = await openNet('mock:net', { queueSize: 64 });
    try {
      const ac = new AbortController();
      const first = net.receive({ signal: ac.signal });
      const second = net.receive();
      ac.abort('no');
      await rejectsAbort(first, 'no', 'aborted receive');
      const frame = new Uint8Array(60).fill(9);
      await net.send(frame);
      assert.deepEqual(await second, frame, 'the frame goes to the reader still waiting');
      const ac2 = new AbortController();
      const it = net.frames({ signal: ac2.signal });
      const next = it.next();
      ac2.abort('done');
      await rejectsAbort(next, 'done', 'frames() while waiting');
      await net.send(frame);
      assert.deepEqual(await net.receive(), frame, 'nothing was lost to the aborted iterator');
    } finally {
      await net.close();
    }
  });

  test('net: an aborted send rejects at once on a stalled device', T, async () => {
    const net = await openNet('mock:net', { queueSize: 8, mock: { fault: 'stall' } });
    try {
      const ac = new AbortController();
      const sends = Array.from({ length: 20 }, () => net.send(new Uint8Array(60), { signal: ac.signal }));
      const batch = net.sendBatch(
        Array.from({ length: 20 }, () => new Uint8Array(60)),
        { signal: ac.signal },
      );
      await tick();
      ac.abort();
      for (const p of [...sends, batch]) await assert.rejects(p, AbortError);
      await net.close();
      await rejectsWithCode(net.send(new Uint8Array(60)), 'EBADF', 'send after close');
    } finally {
      await net.close();
    }
  });
});

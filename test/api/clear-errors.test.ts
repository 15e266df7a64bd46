// Errors that say what happened: EBUSY for a buffer in use, a TypeError for a freed one, and a fresh
// EBADF (the caller's stack, the call's name) for every call on a closed device.
import assert from 'node:assert/strict';
import { constants as bufferConstants } from 'node:buffer';
import { describe, test } from 'node:test';
import { VdpaError, openBlk, openNet } from '../../lib';
import { TEST_TIMEOUT, failsWith, rejectsWithCode } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

describe('clear errors', () => {
  test('freeBuffer of a buffer a request holds: EBUSY; free once it settled', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 4 << 20 } });
    try {
      for (let i = 0; i < 20; i++) {
        const buf = blk.allocBuffer(1 << 20);
        const p = blk.read(0, buf);
        assert.throws(
          () => blk.device.freeBuffer(buf),
          (e: unknown) =>
            e instanceof VdpaError &&
            e.code === 'EBUSY' &&
            e.errno === -16 &&
            e.syscall === 'freeBuffer' &&
            e.path === 'mock:blk' &&
            typeof e.hint === 'string',
        );
        assert.equal(buf.length, 1 << 20, 'the refused buffer is still usable');
        await p;
        blk.device.freeBuffer(buf);
        assert.equal(buf.length, 0);
      }
      // A batch pins its buffers too, also the entries still waiting for a slot.
      const a = blk.allocBuffer(4096);
      const ops = Array.from({ length: 2000 }, (_, i) => ({ op: 'read' as const, offset: (i % 8) * 4096, buffer: a }));
      const done = blk.batch(ops);
      assert.throws(
        () => blk.device.freeBuffer(a),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBUSY',
      );
      await done;
      blk.device.freeBuffer(a);
    } finally {
      await blk.close();
    }
  });

  test('allocBuffer above what an ArrayBuffer can be, or above 4 GiB: RangeError', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      for (const size of [2 ** 32 + 4096, 2 ** 32 + 1, 2 ** 40, bufferConstants.MAX_LENGTH + 1, 2 ** 53])
        assert.throws(() => blk.allocBuffer(size), RangeError, `allocBuffer(${size})`);
      const ok = blk.allocBuffer(4096).fill(7); // still usable
      await blk.write(0, ok);
    } finally {
      await blk.close();
    }
  });

  test('a freed buffer passed to a request is a TypeError that says so', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    const other = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      const buf = blk.allocBuffer(8192);
      const sub = buf.subarray(4096);
      blk.device.freeBuffer(buf);
      for (const [what, p] of [
        ['read', () => blk.read(0, buf)],
        ['write', () => blk.write(0, buf)],
        ['subarray read', () => blk.read(0, sub)],
        ['batch', () => blk.batch([{ op: 'write', offset: 0, buffer: buf }])],
        ['on another device', () => other.write(0, sub)],
      ] as const) {
        const e = await failsWith(p, TypeError, what);
        assert.match(e.message, /freed/, what);
      }
    } finally {
      await blk.close();
      await other.close();
    }
  });

  test('after close(): every rejection is a fresh EBADF with the caller stack and its call name', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    const net = await openNet('mock:net');
    await blk.close();
    await net.close();
    const b = new Uint8Array(512);
    const calls: [string, () => Promise<unknown>][] = [
      ['read', () => blk.read(0, b)],
      ['write', () => blk.write(0, b)],
      ['batch', () => blk.batch([])],
      ['batch', () => blk.batch([{ op: 'read', offset: 0, buffer: b }])],
      ['flush', () => blk.flush()],
      ['discard', () => blk.discard(0, 512)],
      ['writeZeroes', () => blk.writeZeroes(0, 512)],
      ['getId', () => blk.getId()],
      ['send', () => net.send(new Uint8Array(60))],
      ['sendBatch', () => net.sendBatch([])],
      ['receive', () => net.receive()],
    ];
    const seen = new Set<unknown>();
    for (const [syscall, fn] of calls) {
      const e = await rejectsWithCode(callerOfClosedDevice(fn), 'EBADF', syscall);
      assert.equal(e.syscall, syscall);
      assert.equal(e.errno, -9);
      assert.ok(!seen.has(e), `${syscall}: a fresh error, not one shared with another call`);
      seen.add(e);
      assert.match(e.stack ?? '', /callerOfClosedDevice/, `${syscall}: the stack is the caller's`);
    }
    for (const [what, fn] of [
      ['status', () => blk.device.status()],
      ['readConfig', () => blk.device.readConfig(0, 8)],
      ['allocBuffer', () => blk.allocBuffer(4096)],
    ] as const)
      assert.throws(fn, (e: unknown) => e instanceof VdpaError && e.code === 'EBADF' && e.syscall === what);
    // frames() on a closed device just ends.
    for await (const f of net.frames()) assert.fail(`a frame after close: ${f.length}`);
  });
});

function callerOfClosedDevice(fn: () => Promise<unknown>): Promise<unknown> {
  return fn();
}

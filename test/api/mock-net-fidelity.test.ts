// mock:net as a faithful loopback: every frame a driver may send (up to MTU + 14 bytes) comes back,
// a reader that keeps up gets every frame (the device holds transmit chains while its receive
// backlog is full instead of dropping), and the library's own backlog for a reader that does not
// keep up is bounded in bytes and drops, counted, the newest frames.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TEST_TIMEOUT, assertBytes, failsWith, tick } from '../helpers/util';
import { withMockNet } from '../helpers/devices';

const ETH_HEADER = 14;

/** A frame of `len` bytes whose first 4 bytes carry `seq` and the rest a pattern of it. */
function frame(len: number, seq: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 4; i < len; i++) f[i] = (seq + i) & 0xff;
  new DataView(f.buffer).setUint32(0, seq);
  return f;
}
const seqOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset).getUint32(0);

describe('mock:net fidelity', () => {
  for (const mtu of [1500, 65535]) {
    test(`MTU ${mtu}: the largest frame (MTU + 14) comes back; one byte more is a RangeError`, T(), () =>
      withMockNet({ queueSize: 16, mock: { mtu } }, async (net) => {
        assert.equal(net.mtu, mtu);
        const max = mtu + ETH_HEADER;
        for (const len of [max, max - 1, ETH_HEADER]) {
          const sent = frame(len, len);
          const rx = net.receive();
          await net.send(sent);
          assertBytes(await rx, sent, `frame of ${len} bytes`);
        }
        await failsWith(() => net.send(new Uint8Array(max + 1)), RangeError, 'send of MTU + 15 bytes');
        await failsWith(() => net.sendBatch([new Uint8Array(max + 1)]), RangeError, 'sendBatch of MTU + 15 bytes');
        await failsWith(() => net.send(new Uint8Array(ETH_HEADER - 1)), RangeError, 'send of 13 bytes');
        assert.equal(net.droppedFrames, 0);
      }),
    );
  }

  test('a reader that keeps up gets all of 100,000 frames, in order, none dropped', T(60_000), () =>
    withMockNet({ queueSize: 256 }, async (net) => {
      const TOTAL = 100_000;
      const BATCH = 5_000;
      let next = 0;
      const reader = (async () => {
        for await (const f of net.frames()) {
          assert.equal(seqOf(f), next, 'frames arrive in order, none missing');
          assert.equal(f.length, 60 + (next % 8));
          if (++next === TOTAL) return;
        }
      })();
      for (let b = 0; b < TOTAL; b += BATCH)
        await net.sendBatch(Array.from({ length: BATCH }, (_, i) => frame(60 + ((b + i) % 8), b + i)));
      await reader;
      assert.equal(next, TOTAL);
      assert.equal(net.droppedFrames, 0);
    }),
  );

  test(
    'a reader that does not keep up: the backlog is bounded in bytes and the newest are dropped, counted',
    T(60_000),
    () =>
      withMockNet({ queueSize: 64, mock: { mtu: 65535 } }, async (net) => {
        const LEN = 65535 + ETH_HEADER;
        const TOTAL = 1200; // about 75 MiB: more than the library keeps for a reader
        for (let b = 0; b < TOTAL; b += 100)
          await net.sendBatch(Array.from({ length: 100 }, (_, i) => frame(LEN, b + i)));
        // Nobody reads: the library keeps as many whole frames as fit in 64 MiB, the oldest, and counts
        // every later one as dropped (the device itself drops nothing).
        const keptMax = Math.floor((64 * 2 ** 20) / LEN);
        while (net.droppedFrames < TOTAL - keptMax) await tick();
        for (let i = 0; i < 5; i++) await tick();
        assert.equal(net.droppedFrames, TOTAL - keptMax, 'dropped = sent - what fits');
        assert.deepEqual(
          net.stats().map((s) => [s.rxFrames, s.rxDropped]),
          [[TOTAL, TOTAL - keptMax]],
          'counted on the pair they arrived on: received includes dropped',
        );
        for (let i = 0; i < keptMax; i++) assert.equal(seqOf(await net.receive()), i, 'the oldest are kept, in order');
        const ac = new AbortController();
        const more = net.receive({ signal: ac.signal });
        await tick();
        ac.abort();
        await assert.rejects(more, { name: 'AbortError' }, 'nothing else was kept');
      }),
  );
});

function T(timeout = TEST_TIMEOUT): { timeout: number } {
  return { timeout: Math.max(timeout, TEST_TIMEOUT) };
}

// The packed ring end to end over the mock devices: negotiation through the `packed` option, real
// blk and net traffic over many laps (queue sizes that are and are not powers of two are covered
// by the loopback tests; the TS API keeps powers of two), and the mock's device faults, which the
// packed driver must turn into EPROTO failures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Feature, openBlk, openNet } from '../../lib';

const FAULTS: [string, RegExp][] = [
  ['bad-used-id', /used id \d+ beyond the queue size/],
  ['long-used-len', /bytes written into a chain with only/],
  ['used-idx-jump', /neither an available nor a used descriptor/],
];

describe('packed ring over mock:blk', { timeout: 60000 }, () => {
  it('negotiates RING_PACKED only when asked', async () => {
    const split = await openBlk('mock:blk', { queueSize: 16 });
    assert.equal(split.device.features & Feature.RING_PACKED, 0n);
    assert.ok(split.device.deviceFeatures & Feature.RING_PACKED, 'the mock offers it');
    await split.close();
    const packed = await openBlk('mock:blk', { queueSize: 16, packed: true });
    assert.ok(packed.device.features & Feature.RING_PACKED);
    await packed.close();
  });

  for (const queueSize of [4, 64]) {
    it(`writes and reads back over many laps (queue size ${queueSize}, 2 queues)`, async () => {
      const blk = await openBlk('mock:blk', { queueSize, numQueues: 2, packed: true, mock: { numQueues: 2 } });
      // Fewer in flight than the queue holds: a full queue currently stalls openBlk (split too).
      const par = Math.min(48, queueSize - 1);
      const bufs: Uint8Array[] = [];
      for (let i = 0; i < par; i++) {
        const b = blk.allocBuffer(4096);
        b.fill(i + 1);
        b[0] = i;
        bufs.push(b);
      }
      for (let round = 0; round < 12; round++) {
        await Promise.all(bufs.map((b, i) => blk.write((round * par + i) * 4096, b)));
      }
      const back = blk.allocBuffer(4096);
      for (const i of [0, par >> 1, par - 1]) {
        await blk.read((11 * par + i) * 4096, back);
        assert.equal(back[0], i);
        assert.equal(back[4095], i + 1);
      }
      // Multi-segment requests through indirect tables.
      const big = new Uint8Array(256 * 1024).map((_, i) => (i * 7) & 0xff);
      await blk.write(1 << 20, big);
      const bigBack = new Uint8Array(big.length);
      await blk.read(1 << 20, bigBack);
      assert.ok(Buffer.from(bigBack).equals(Buffer.from(big)));
      await blk.close();
    });
  }

  for (const [fault, reason] of FAULTS) {
    it(`fault ${fault} breaks the queue with EPROTO`, async () => {
      const blk = await openBlk('mock:blk', { queueSize: 8, packed: true, mock: { fault, faultAfter: 3 } });
      const buf = blk.allocBuffer(512);
      for (let i = 0; i < 3; i++) await blk.write(i * 512, buf);
      await assert.rejects(blk.write(0, buf), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'EPROTO');
        assert.match(e.message + String((e as { hint?: string }).hint ?? ''), reason);
        return true;
      });
      await blk.close();
    });
  }
});

describe('packed ring over mock:net', { timeout: 60000 }, () => {
  it('frames sent come back', async () => {
    const net = await openNet('mock:net', { queueSize: 32, packed: true });
    assert.ok(net.device.features & Feature.RING_PACKED);
    for (let round = 0; round < 10; round++) {
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 20; i++) {
        const f = new Uint8Array(60 + i);
        f.fill(round);
        f[14] = i;
        frames.push(f);
      }
      await net.sendBatch(frames);
      for (let i = 0; i < 20; i++) {
        const got = await net.receive();
        assert.equal(got.length, 60 + i);
        assert.equal(got[14], i);
        assert.equal(got[20], round);
      }
    }
    await net.close();
  });
});

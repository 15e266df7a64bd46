// Stand-in for the blk conformance suite (test/conformance/blk.test.ts) while that is being written:
// scripts/vm/guest-tests.sh runs this file instead when dist/test/conformance/blk.test.js is missing.
// Reads VDPA_TEST_DEVICE / VDPA_TEST_QUEUES / VDPA_TEST_QUEUE_SIZE like the suite does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openBlk } from '../../lib';
import { IN_VM, SKIP_REASON, fillRandom, prng, within } from './vm-env';

const dev = process.env.VDPA_TEST_DEVICE;
const queues = Number(process.env.VDPA_TEST_QUEUES ?? 1);
const queueSize = Number(process.env.VDPA_TEST_QUEUE_SIZE ?? 256);

if (!IN_VM || !dev) {
  it('blk smoke', { skip: IN_VM ? 'VDPA_TEST_DEVICE is not set' : SKIP_REASON }, () => {});
} else {
  describe(`blk smoke on ${dev} (${queues} queues x ${queueSize})`, () => {
    it('opens with the requested shape and reports the image size', async () => {
      const blk = await openBlk(dev, { numQueues: queues, queueSize });
      try {
        assert.equal(blk.numQueues, queues);
        assert.equal(blk.queueSize, queueSize);
        assert.equal(blk.capacity, 64 << 20);
        assert.equal(blk.device.transport, 'vhost-vdpa');
      } finally {
        await blk.close();
      }
    });

    it('writes and reads back 4x the ring size in flight, DMA and plain buffers', async () => {
      const blk = await openBlk(dev, { numQueues: queues, queueSize });
      try {
        const n = 4 * queueSize * queues;
        const rnd = prng(queues * 1000 + queueSize);
        const data = new Uint8Array(n * 4096);
        fillRandom(rnd, data);
        const bufs = Array.from({ length: n }, (_, i) => {
          const b = i % 2 ? blk.allocBuffer(4096) : new Uint8Array(4096);
          b.set(data.subarray(i * 4096, (i + 1) * 4096));
          return b;
        });
        await within(Promise.all(bufs.map((b, i) => blk.write(i * 8192, b))), 120_000, 'writes');
        await blk.flush();
        for (const b of bufs) b.fill(0);
        await within(Promise.all(bufs.map((b, i) => blk.read(i * 8192, b))), 120_000, 'reads');
        bufs.forEach((b, i) => assert.deepEqual(b, data.subarray(i * 4096, (i + 1) * 4096), `block ${i}`));
      } finally {
        await blk.close();
      }
    });

    it('getId answers and an out-of-range request is a RangeError', async () => {
      const blk = await openBlk(dev, { numQueues: queues, queueSize });
      try {
        assert.equal(typeof (await within(blk.getId(), 30_000, 'getId')), 'string');
        await assert.rejects(blk.read(blk.capacity, new Uint8Array(512)), RangeError);
      } finally {
        await blk.close();
      }
    });
  });
}

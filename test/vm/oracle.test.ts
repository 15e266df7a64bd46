// Data oracle, guest half: random data at random 4 KiB-aligned offsets through /dev/vhost-vdpa-N
// (VDUSE + qemu-storage-daemon on an image in the results share), read back and compared here;
// then a manifest + the data itself go to $VDPA_VM_RESULTS so the host can check the image file
// byte for byte after the guest exits (scripts/vm/oracle-check.py), owing nothing to the library.
// A second round writes 32 bounce-buffered extents at once while DMA buffers are allocated and
// freed in a loop: each of those is an IOTLB update, which must not break the writes in flight.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { openBlk, type BlkDevice } from '../../lib';
import { IN_VM, SKIP_REASON, fillRandom, image, prng, resultsDir, startBlk, within } from './vm-env';

const MiB = 1 << 20;
const CHUNK = 2 * MiB; // the image is cut into chunks; each extent lives inside one, so none overlap
const EXTENTS = 20;
const IN_FLIGHT = 4; // DMA buffers + bounce regions stay well under the default 8 MiB RLIMIT_MEMLOCK
const BOUNCE_WRITES = 32; // the alloc/free round: 64 KiB writes from ordinary memory, all at once
const BOUNCE_LEN = 64 * 1024;
const SLOT = 128 * 1024; // each of those extents lives in its own 128 KiB slot of a chunk

interface Extent {
  offset: number;
  length: number;
  dataOffset: number;
  kind: 'dma' | 'plain' | 'plain-subarray' | 'bounce-under-alloc';
  sha256: string;
}

async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

if (!IN_VM) {
  test('vm data oracle', { skip: SKIP_REASON }, () => {});
} else {
  test('vm data oracle: random extents written through vhost-vdpa, read back, manifest for the host', async () => {
    const res = resultsDir();
    const img = image('oracle.img');
    const imageSize = fs.statSync(img).size;
    const seed = Number(process.env.VDPA_ORACLE_SEED ?? (Date.now() ^ (process.pid << 8)) >>> 0);
    console.log(`# oracle seed ${seed}`);
    const rnd = prng(seed);
    const dev = startBlk('oracle', img, 2, 128);
    let blk: BlkDevice | undefined;
    try {
      blk = await openBlk(dev, { numQueues: 2, queueSize: 128 });
      assert.equal(blk.capacity, imageSize);

      // Pick distinct chunks, then an extent inside each: 4 KiB aligned, 4 KiB .. 512 KiB, and one
      // 1.5 MiB extent (more than one request's worth) in a DMA buffer.
      const chunks = Array.from({ length: Math.floor(imageSize / CHUNK) }, (_, i) => i);
      for (let i = chunks.length - 1; i > 0; i--) {
        const j = rnd() % (i + 1);
        [chunks[i], chunks[j]] = [chunks[j] as number, chunks[i] as number];
      }
      const extents: Extent[] = [];
      let dataOffset = 0;
      for (let i = 0; i < EXTENTS; i++) {
        const length = i === 0 ? 1.5 * MiB : 4096 * (1 + (rnd() % 128));
        const slack = (CHUNK - length) / 4096;
        const offset = (chunks[i] as number) * CHUNK + 4096 * (rnd() % (slack + 1));
        const kind = i % 3 === 0 ? 'dma' : i % 3 === 1 ? 'plain' : 'plain-subarray';
        extents.push({ offset, length, dataOffset, kind, sha256: '' });
        dataOffset += length;
      }
      // The alloc/free round: the chunks after the never-written one, several slots each.
      const spare = chunks.slice(EXTENTS + 1);
      const bounceExtents: Extent[] = [];
      for (let i = 0; i < BOUNCE_WRITES; i++) {
        const chunk = spare[i % spare.length] as number;
        const slot = Math.floor(i / spare.length);
        assert.ok((slot + 1) * SLOT <= CHUNK, 'the image is too small for the alloc/free round');
        const offset = chunk * CHUNK + slot * SLOT + 4096 * (rnd() % ((SLOT - BOUNCE_LEN) / 4096 + 1));
        bounceExtents.push({ offset, length: BOUNCE_LEN, dataOffset, kind: 'bounce-under-alloc', sha256: '' });
        dataOffset += BOUNCE_LEN;
      }
      extents.push(...bounceExtents);
      const data = new Uint8Array(dataOffset);
      fillRandom(rnd, data);
      for (const e of extents)
        e.sha256 = createHash('sha256')
          .update(data.subarray(e.dataOffset, e.dataOffset + e.length))
          .digest('hex');

      const b = blk;
      const dmaBuffers = new Map(extents.filter((e) => e.kind === 'dma').map((e) => [e, b.allocBuffer(e.length)]));
      const firstRound = extents.filter((e) => e.kind !== 'bounce-under-alloc');
      const bufferFor = (e: Extent): Uint8Array => {
        if (e.kind === 'dma') return dmaBuffers.get(e) as Uint8Array;
        if (e.kind === 'plain') return new Uint8Array(e.length);
        return new Uint8Array(e.length + 1024).subarray(512, 512 + e.length); // not page aligned
      };

      // Write, several in flight.
      await within(
        pool(firstRound, IN_FLIGHT, async (e) => {
          const buf = bufferFor(e);
          buf.set(data.subarray(e.dataOffset, e.dataOffset + e.length));
          await b.write(e.offset, buf);
        }),
        120_000,
        'writes',
      );
      await within(b.flush(), 30_000, 'flush');

      // Read back, several in flight, and compare; plus a never-written range must read as zeroes.
      await within(
        pool(firstRound, IN_FLIGHT, async (e) => {
          const buf = bufferFor(e);
          buf.fill(0xa5);
          await b.read(e.offset, buf);
          const want = data.subarray(e.dataOffset, e.dataOffset + e.length);
          if (Buffer.compare(Buffer.from(buf.buffer, buf.byteOffset, buf.length), Buffer.from(want)) !== 0) {
            const at = buf.findIndex((v, k) => v !== want[k]);
            assert.fail(`extent @${e.offset} (+${e.length}, ${e.kind}) differs at byte ${at}`);
          }
        }),
        120_000,
        'reads',
      );
      // The alloc/free round: 32 bounce-buffered writes in flight while DMA buffers come and go (the
      // first round's are freed among them). Each allocation or free is an IOTLB update.
      const toFree = [...dmaBuffers.values()];
      let settled = false;
      const writes = Promise.all(
        bounceExtents.map((e) => b.write(e.offset, data.slice(e.dataOffset, e.dataOffset + e.length))),
      ).finally(() => (settled = true));
      const held: Uint8Array[] = [];
      let updatesUnderIo = 0;
      const churn = (async () => {
        await new Promise((r) => setImmediate(r)); // the writes are with the device now
        for (let n = 0; !settled || n < 8; n++) {
          const fresh = b.allocBuffer(4096 * (1 + (n % 4)));
          fresh.fill(n & 0xff);
          held.push(fresh);
          const old = toFree.pop() ?? (held.length > 3 ? held.shift() : undefined);
          if (old) b.device.freeBuffer(old);
          if (!settled) updatesUnderIo++;
          await new Promise((r) => setTimeout(r, 1));
        }
      })();
      await within(Promise.all([writes, churn]), 120_000, 'bounce writes under alloc/free');
      for (const h of held) b.device.freeBuffer(h);
      console.log(`# oracle: ${updatesUnderIo} allocBuffer/freeBuffer rounds while the 32 writes were in flight`);
      assert.ok(updatesUnderIo > 0, 'the writes settled before any allocBuffer/freeBuffer: nothing was tested');
      assert.ok(b.bounceStats.chunks >= BOUNCE_WRITES, `the bounce pool did not grow: ${b.bounceStats.chunks} chunks`);
      await within(b.flush(), 30_000, 'flush');
      const back = new Uint8Array(BOUNCE_LEN);
      for (const e of bounceExtents) {
        back.fill(0xa5);
        await within(b.read(e.offset, back), 30_000, 'read back');
        const at = back.findIndex((v, k) => v !== data[e.dataOffset + k]);
        assert.equal(at, -1, `bounce extent @${e.offset} differs at byte ${at}`);
      }

      const unused = (chunks[EXTENTS] as number) * CHUNK;
      const zero = b.allocBuffer(64 * 1024).fill(0x5a);
      await b.read(unused, zero);
      assert.ok(
        zero.every((v) => v === 0),
        `never-written range @${unused} does not read as zeroes`,
      );

      await b.close();
      blk = undefined;
      // The device is removed (and its daemon stopped, flushing the image again) by guest-tests.sh
      // after this process exits: `vdpa dev del` blocks while the process holds the fd.

      fs.writeFileSync(path.join(res, 'oracle-data.bin'), data);
      const manifest = {
        seed,
        prng: 'mulberry32, little-endian u32 words (test/vm/vm-env.ts)',
        image: img,
        imageSize,
        dataFile: path.join(res, 'oracle-data.bin'),
        dataSha256: createHash('sha256').update(data).digest('hex'),
        extents,
      };
      fs.writeFileSync(path.join(res, 'oracle.json'), JSON.stringify(manifest, null, 1));
      console.log(`# oracle: ${extents.length} extents, ${(dataOffset / MiB).toFixed(2)} MiB verified in the guest`);
    } finally {
      if (blk) await blk.close().catch(() => {});
    }
  });
}

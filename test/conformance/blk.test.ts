// virtio-blk conformance: runs against every target in test/helpers/devices.ts (mock shapes by
// default, a real /dev/vhost-vdpa-N with VDPA_TEST_DEVICE). Device-agnostic: it never assumes the
// disk starts zeroed, asserts only on bytes it wrote itself, and writes a few MiB in total.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test as nodeTest, type TestContext } from 'node:test';
import { BlkFeature, Feature, VdpaError, openBlk, type BlkDevice, type BlkOp } from '../../lib';
import { blkTargets, type BlkTarget } from '../helpers/devices';
import { Rng, TEST_TIMEOUT, assertBytes, assertFilled, failsWith, rejectsWithCode } from '../helpers/util';

const SECTOR = 512;

/** Hands out disjoint random extents of the disk, so tests never read what another one wrote. */
class Extents {
  private readonly used: [number, number][] = [];
  constructor(
    private readonly capacity: number,
    private readonly rng: Rng,
  ) {}
  take(length: number, align = SECTOR): number {
    const slots = Math.floor((this.capacity - length) / align) + 1;
    assert.ok(slots > 0, `device too small for a ${length}-byte extent`);
    for (let attempt = 0; attempt < 10000; attempt++) {
      const off = this.rng.below(slots) * align;
      if (this.used.some(([s, e]) => off < e && s < off + length)) continue;
      this.used.push([off, off + length]);
      return off;
    }
    throw new Error(`no free ${length}-byte extent left on a ${this.capacity}-byte device`);
  }
}

function suite(target: BlkTarget): void {
  describe(target.name, () => {
    let blk: BlkDevice;
    let rng: Rng;
    let extents: Extents;

    // A test that fails or hangs may leave the device wedged: the next test then starts on a
    // freshly opened device instead of failing in a cascade.
    let healthy = false;
    const test = (name: string, opts: { timeout: number }, fn: (t: TestContext) => unknown): void => {
      nodeTest(name, opts, async (t) => {
        healthy = false;
        await fn(t);
        healthy = true;
      });
    };

    before(async () => {
      blk = await openBlk(target.spec, target.options);
      rng = new Rng();
      extents = new Extents(blk.capacity, rng);
      healthy = true;
    });
    beforeEach(async () => {
      if (healthy || !blk) return;
      await blk.close();
      blk = await openBlk(target.spec, target.options);
    });
    after(async () => {
      await blk?.close();
    });

    test('identity: a virtio 1.x block device', { timeout: TEST_TIMEOUT }, (t) => {
      t.diagnostic(`seed ${rng.seed} (set VDPA_TEST_SEED to replay)`);
      const d = blk.device;
      assert.equal(d.deviceType, 'blk');
      assert.equal(d.deviceId, 2);
      assert.equal(typeof d.transport, 'string');
      assert.ok(['mock', 'vhost-vdpa', 'vfio'].includes(d.transport), `transport '${d.transport}'`);
      if (target.spec.startsWith('mock:')) assert.equal(d.transport, 'mock');
      if (target.spec.startsWith('/dev/vhost-vdpa-')) assert.equal(d.transport, 'vhost-vdpa');
      assert.equal(d.path, target.spec);
      assert.ok(d.deviceFeatures & Feature.VERSION_1, 'device offers VERSION_1');
      assert.ok(d.features & Feature.VERSION_1, 'VERSION_1 negotiated');
      assert.equal(d.features & ~d.deviceFeatures, 0n, 'only offered features negotiated');
      assert.ok(d.status() & 4, 'DRIVER_OK is set');
      assert.equal(blk.device, d);
      if (target.options.numQueues !== undefined) assert.equal(blk.numQueues, target.options.numQueues);
      if (target.options.queueSize !== undefined) assert.equal(blk.queueSize, target.options.queueSize);
      assert.ok(blk.numQueues >= 1);
      const packed = (d.features & Feature.RING_PACKED) !== 0n;
      assert.equal(packed, target.options.packed === true, 'packed ring negotiated exactly when asked for');
      // Split rings need a power of two; packed rings take any size.
      const pow2 = (blk.queueSize & (blk.queueSize - 1)) === 0;
      assert.ok(blk.queueSize >= 1 && (packed || pow2), `queueSize ${blk.queueSize}`);
      assert.equal(blk.readOnly, (d.features & BlkFeature.RO) !== 0n);
    });

    test('capacity and block size', { timeout: TEST_TIMEOUT }, () => {
      assert.ok(Number.isSafeInteger(blk.capacity) && blk.capacity > 0, `capacity ${blk.capacity}`);
      assert.equal(blk.capacity % SECTOR, 0);
      if (target.options.mock?.capacity !== undefined) assert.equal(blk.capacity, target.options.mock.capacity);
      assert.ok(blk.blockSize >= SECTOR && blk.blockSize % SECTOR === 0, `blockSize ${blk.blockSize}`);
      assert.ok(blk.capacity >= 16 * 1024 * 1024, 'the suite needs a disk of at least 16 MiB');
    });

    const sizes = [512, 1024, 4096, 65536, 65536 + 512, 200 * 1024, 1 << 20, (1 << 20) + 4096];

    test('write then read back, plain Uint8Array (512 B .. 1 MiB+)', { timeout: TEST_TIMEOUT }, async () => {
      for (const size of sizes) {
        const off = extents.take(size);
        const data = rng.bytes(size);
        await blk.write(off, data);
        const back = new Uint8Array(size).fill(0xa5);
        await blk.read(off, back);
        assertBytes(back, data, `plain ${size} B at ${off}`);
      }
    });

    test(
      'write then read back, allocBuffer zero-copy buffers (512 B .. 1 MiB+)',
      { timeout: TEST_TIMEOUT },
      async () => {
        for (const size of sizes) {
          const off = extents.take(size);
          const buf = blk.allocBuffer(size);
          assert.equal(buf.length, size);
          rng.fill(buf);
          const data = buf.slice();
          await blk.write(off, buf);
          assertBytes(buf, data, 'a write leaves its buffer alone');
          buf.fill(0x5a);
          await blk.read(off, buf);
          assertBytes(buf, data, `dma ${size} B at ${off}`);
          // Cross-check through the other path: what the zero-copy write put on disk, read via a bounce.
          const plain = new Uint8Array(size);
          await blk.read(off, plain);
          assertBytes(plain, data, `dma-written ${size} B read into plain memory`);
          blk.device.freeBuffer(buf);
        }
      },
    );

    test('views at an offset into a larger buffer touch only their own bytes', { timeout: TEST_TIMEOUT }, async () => {
      const size = 8192;
      const off = extents.take(size);
      const data = rng.bytes(size);
      for (const kind of ['plain', 'dma'] as const) {
        const whole = kind === 'dma' ? blk.allocBuffer(size + 2 * 4096) : new Uint8Array(size + 2 * 4096);
        whole.fill(0xee);
        const view = whole.subarray(4096, 4096 + size);
        view.set(data);
        await blk.write(off, view);
        view.fill(0);
        await blk.read(off, view);
        assertBytes(view, data, `${kind} subarray round trip`);
        assertFilled(whole.subarray(0, 4096), 0xee, `${kind}: bytes before the view`);
        assertFilled(whole.subarray(4096 + size), 0xee, `${kind}: bytes after the view`);
        // Odd (but sector-multiple) byteOffset: not page aligned.
        const odd = whole.subarray(100, 100 + SECTOR);
        await blk.read(off, odd);
        assertBytes(odd, data.subarray(0, SECTOR), `${kind}: unaligned view read`);
        assertFilled(whole.subarray(0, 100), 0xee, `${kind}: bytes before the unaligned view`);
      }
    });

    test('256 requests in flight at once across the queues', { timeout: TEST_TIMEOUT }, async () => {
      const n = 256;
      const size = 4096;
      const offs = Array.from({ length: n }, () => extents.take(size));
      const datas = offs.map(() => rng.bytes(size));
      assert.ok(n >= 128 && n >= blk.queueSize, 'more requests than one queue holds');
      await Promise.all(offs.map((off, i) => blk.write(off, datas[i] as Uint8Array)));
      const dma = blk.allocBuffer((n / 2) * size);
      const backs = offs.map((_, i) =>
        i % 2 ? dma.subarray((i >> 1) * size, ((i >> 1) + 1) * size) : new Uint8Array(size),
      );
      await Promise.all(offs.map((off, i) => blk.read(off, backs[i] as Uint8Array)));
      for (let i = 0; i < n; i++)
        assertBytes(backs[i] as Uint8Array, datas[i] as Uint8Array, `request ${i} at ${offs[i]}`);
      blk.device.freeBuffer(dma);
    });

    test('batch() of mixed reads and writes', { timeout: TEST_TIMEOUT }, async () => {
      const n = 32;
      const size = 8192;
      const readOffs = Array.from({ length: n }, () => extents.take(size));
      const writeOffs = Array.from({ length: n }, () => extents.take(size));
      const readData = readOffs.map(() => rng.bytes(size));
      const writeData = writeOffs.map(() => rng.bytes(size));
      await Promise.all(readOffs.map((off, i) => blk.write(off, readData[i] as Uint8Array)));
      const dma = blk.allocBuffer(n * size);
      const into = readOffs.map((_, i) => (i % 2 ? dma.subarray(i * size, (i + 1) * size) : new Uint8Array(size)));
      // Write sources alternate between plain memory and a zero-copy buffer.
      const src = blk.allocBuffer(n * size);
      const from = writeData.map((d, i) => {
        if (i % 2) return d;
        const view = src.subarray(i * size, (i + 1) * size);
        view.set(d);
        return view;
      });
      const ops: BlkOp[] = [];
      for (let i = 0; i < n; i++) {
        ops.push({ op: 'read', offset: readOffs[i] as number, buffer: into[i] as Uint8Array });
        ops.push({ op: 'write', offset: writeOffs[i] as number, buffer: from[i] as Uint8Array });
      }
      assert.equal(await blk.batch(ops), undefined);
      for (let i = 0; i < n; i++) assertBytes(into[i] as Uint8Array, readData[i] as Uint8Array, `batch read ${i}`);
      for (let i = 0; i < n; i++) {
        const back = new Uint8Array(size);
        await blk.read(writeOffs[i] as number, back);
        assertBytes(back, writeData[i] as Uint8Array, `batch write ${i}`);
      }
      assert.equal(await blk.batch([]), undefined, 'an empty batch resolves');
      blk.device.freeBuffer(dma);
      blk.device.freeBuffer(src);
    });

    test('flush', { timeout: TEST_TIMEOUT }, async () => {
      const off = extents.take(4096);
      const data = rng.bytes(4096);
      await blk.write(off, data);
      assert.equal(await blk.flush(), undefined);
      const back = new Uint8Array(4096);
      await blk.read(off, back);
      assertBytes(back, data, 'data after flush');
    });

    for (const kind of ['discard', 'writeZeroes'] as const) {
      test(`${kind} reads back as zeroes where offered`, { timeout: TEST_TIMEOUT }, async () => {
        const feature = kind === 'discard' ? BlkFeature.DISCARD : BlkFeature.WRITE_ZEROES;
        const size = 3 * 16384;
        const off = extents.take(size);
        const data = rng.bytes(size);
        await blk.write(off, data);
        const run = (o: number, l: number): Promise<void> =>
          kind === 'discard' ? blk.discard(o, l) : blk.writeZeroes(o, l);
        if (!(blk.device.features & feature)) {
          await rejectsWithCode(run(off + 16384, 16384), 'EOPNOTSUPP', `${kind} without the feature`);
          const back = new Uint8Array(size);
          await blk.read(off, back);
          assertBytes(back, data, `${kind} refused: nothing changed`);
          return;
        }
        await run(off + 16384, 16384);
        const back = new Uint8Array(size);
        await blk.read(off, back);
        assertBytes(back.subarray(0, 16384), data.subarray(0, 16384), `before the ${kind} range`);
        assertBytes(back.subarray(32768), data.subarray(32768), `after the ${kind} range`);
        if (kind === 'writeZeroes' || target.discardZeroes)
          assertFilled(back.subarray(16384, 32768), 0, `${kind} range`);
        // A single sector at the very end of the device.
        const last = blk.capacity - SECTOR;
        await run(last, SECTOR);
        if (kind === 'writeZeroes' || target.discardZeroes) {
          const tail = new Uint8Array(SECTOR).fill(1);
          await blk.read(last, tail);
          assertFilled(tail, 0, `${kind} of the last sector`);
        }
      });
    }

    test('getId returns a string of at most 20 characters', { timeout: TEST_TIMEOUT }, async () => {
      const id = await blk.getId();
      assert.equal(typeof id, 'string');
      assert.ok(id.length <= 20, `id '${id}' is ${id.length} chars`);
      assert.ok(!id.includes('\0'), 'no NUL bytes in the id');
      assert.equal(await blk.getId(), id, 'the id is stable');
    });

    test(
      'out-of-range and unaligned requests are RangeErrors before anything is sent',
      { timeout: TEST_TIMEOUT },
      async () => {
        const cap = blk.capacity;
        // Known content at the end of the disk and at a probe extent: a request that slipped
        // through (even partly) would change it.
        const tailData = rng.bytes(SECTOR);
        await blk.write(cap - SECTOR, tailData);
        const probe = extents.take(4096);
        const probeData = rng.bytes(4096);
        await blk.write(probe, probeData);
        const junk = new Uint8Array(1024).fill(0x77);
        const cases: [string, () => Promise<unknown>][] = [
          ['read at capacity', () => blk.read(cap, new Uint8Array(SECTOR))],
          ['read crossing the end', () => blk.read(cap - SECTOR, new Uint8Array(2 * SECTOR))],
          ['write crossing the end', () => blk.write(cap - SECTOR, junk)],
          ['write far past the end', () => blk.write(cap * 2, junk.subarray(0, SECTOR))],
          ['read at unaligned offset', () => blk.read(probe + 100, new Uint8Array(SECTOR))],
          ['write at unaligned offset', () => blk.write(probe + 1, junk.subarray(0, SECTOR))],
          ['write of unaligned length', () => blk.write(probe, junk.subarray(0, 100))],
          ['read of unaligned length', () => blk.read(probe, new Uint8Array(SECTOR + 1))],
          ['write at negative offset', () => blk.write(-SECTOR, junk.subarray(0, SECTOR))],
          ['empty write', () => blk.write(probe, new Uint8Array(0))],
          [
            'batch with one bad entry',
            () =>
              blk.batch([
                { op: 'write', offset: probe, buffer: junk.subarray(0, SECTOR) },
                { op: 'write', offset: cap, buffer: junk.subarray(0, SECTOR) },
              ]),
          ],
          ['discard past the end', () => blk.discard(cap - SECTOR, 2 * SECTOR)],
          ['writeZeroes unaligned', () => blk.writeZeroes(probe + 1, SECTOR)],
          ['writeZeroes crossing the end', () => blk.writeZeroes(cap - SECTOR, 2 * SECTOR)],
        ];
        for (const [what, fn] of cases) await failsWith(fn, RangeError, what);
        const tail = new Uint8Array(SECTOR);
        await blk.read(cap - SECTOR, tail);
        assertBytes(tail, tailData, 'last sector untouched by refused requests');
        const back = new Uint8Array(4096);
        await blk.read(probe, back);
        assertBytes(back, probeData, 'probe extent untouched by refused requests');
      },
    );

    test('close with I/O in flight: completed or ECANCELED, then EBADF', { timeout: TEST_TIMEOUT }, async () => {
      const n = 128;
      const off = extents.take(n * 4096);
      const dma = blk.allocBuffer(n * 4096);
      const reads: Promise<unknown>[] = [];
      for (let i = 0; i < n; i++) {
        const buf = i % 2 ? dma.subarray(i * 4096, (i + 1) * 4096) : new Uint8Array(4096);
        reads.push(blk.read(off + i * 4096, buf));
      }
      reads.push(blk.read(off, new Uint8Array(n * 4096))); // split into many chains
      reads.push(blk.flush());
      // Let the batch reach the device (microtasks only: completions need the event loop).
      for (let i = 0; i < 8; i++) await Promise.resolve();
      const closing = blk.close();
      const errors = await Promise.allSettled(reads);
      // What the device completes while closing is delivered; only what it still holds at the reset
      // is cancelled (test/api/close.test.ts pins both cases down with a slow and a stalled mock).
      for (const [i, r] of errors.entries()) {
        if (r.status === 'rejected') {
          assert.ok(r.reason instanceof VdpaError, `request ${i}: ${String(r.reason)}`);
          assert.equal(r.reason.code, 'ECANCELED', `request ${i}: ${r.reason.message}`);
          assert.equal(r.reason.errno, -125);
        }
      }
      await closing;
      assert.equal(dma.length, 0, 'allocBuffer views are detached by close()');
      assert.equal(blk.device.closed, true);
      const buf = new Uint8Array(SECTOR);
      await rejectsWithCode(blk.read(0, buf), 'EBADF', 'read after close');
      await rejectsWithCode(blk.write(0, buf), 'EBADF', 'write after close');
      await rejectsWithCode(blk.batch([{ op: 'read', offset: 0, buffer: buf }]), 'EBADF', 'batch after close');
      await rejectsWithCode(blk.flush(), 'EBADF', 'flush after close');
      await rejectsWithCode(blk.getId(), 'EBADF', 'getId after close');
      await rejectsWithCode(blk.writeZeroes(0, SECTOR), 'EBADF', 'writeZeroes after close');
      await rejectsWithCode(blk.discard(0, SECTOR), 'EBADF', 'discard after close');
      assert.throws(
        () => blk.allocBuffer(4096),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBADF',
      );
      assert.equal(await blk.close(), undefined, 'a second close is a no-op');
    });

    test('reopen, close with requests not yet submitted: ECANCELED', { timeout: TEST_TIMEOUT }, async () => {
      await blk.close();
      blk = await openBlk(target.spec, target.options);
      const pending = [blk.read(0, new Uint8Array(4096)), blk.getId(), blk.read(0, blk.allocBuffer(4096))];
      await blk.close();
      for (const p of pending) await rejectsWithCode(p, 'ECANCELED', 'request queued in the same tick as close()');
    });
  });
}

describe('virtio-blk conformance', () => {
  for (const target of blkTargets()) suite(target);
});

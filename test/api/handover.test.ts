// blk.handOver(): a driver under a seeded random load moves between mock devices that serve one
// file, and every read returns what the model of the disk says; every failure branch leaves the
// driver on its old device, still working.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AbortError, VdpaError, openBlk, type BlkDevice, type HandOverResult, type MockOptions } from '../../lib';
import { fillBlock, progress, startLoad as startLoadOn, type Load } from '../helpers/blk-load';
import { TEST_TIMEOUT } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT * 2 };
const BLOCK = 4096;
const BLOCKS = 256;
const SIZE = BLOCK * BLOCKS;
/** The load's blocks; the last one is for checks made while it runs. */
const LOAD_BLOCKS = BLOCKS - 1;
const SPARE = LOAD_BLOCKS * BLOCK;

let dir = '';
let image = '';
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'vdpa-handover-'));
  image = path.join(dir, 'disk.img');
});
after(() => rmSync(dir, { recursive: true, force: true }));

function freshImage(): void {
  writeFileSync(image, new Uint8Array(SIZE));
}

function startLoad(blk: BlkDevice, seed: number, depth = 32): Load {
  return startLoadOn(blk, seed, LOAD_BLOCKS, depth);
}

/** The image file against the model, once every device is closed. */
function checkImage(version: Uint32Array): void {
  const disk = readFileSync(image);
  const expect = new Uint8Array(BLOCK);
  for (let b = 0; b < LOAD_BLOCKS; b++) {
    const ver = version[b] as number;
    fillBlock(expect, b, ver);
    assert.ok(disk.subarray(b * BLOCK, (b + 1) * BLOCK).equals(expect), `block ${b} in the image (version ${ver})`);
  }
}

function mockFile(extra: MockOptions = {}): { mock: MockOptions } {
  return { mock: { file: image, numQueues: 2, ...extra } };
}

describe('blk.handOver() between mock devices on one file', () => {
  for (const variant of [
    { name: 'suspend', mock: { suspend: true }, method: 'suspend' },
    { name: 'drain', mock: {}, method: 'drain' },
    { name: 'drain, VDUSE-like devices (deferred DMA updates)', mock: { strictDmaUpdates: true }, method: 'drain' },
  ] as const) {
    test(`a load at depth 32 runs through 8 hand-overs (${variant.name})`, T, async () => {
      freshImage();
      const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 64, ...mockFile(variant.mock) });
      const events: HandOverResult[] = [];
      blk.on('handOver', (r) => events.push(r));
      const load = startLoad(blk, 12);
      const results: HandOverResult[] = [];
      for (let i = 0; i < 8; i++) {
        await progress(load, 200);
        results.push(await blk.handOver('mock:blk', mockFile(variant.mock)));
        assert.equal(blk.device.state, 'open');
      }
      await progress(load, 200);
      await load.stop();
      assert.deepEqual(load.failures, [], 'no request failed');
      assert.deepEqual(load.mismatches, [], 'every read matched the model');
      assert.deepEqual(events, results, "each hand-over emitted 'handOver' with its result");
      for (const r of results) {
        assert.equal(r.from, 'mock:blk');
        assert.equal(r.to, 'mock:blk');
        assert.equal(r.method, variant.method);
        assert.ok(r.pausedMs >= 0);
      }
      await blk.close();
      checkImage(load.version);
    });
  }

  test('suspend: the chains a device left in its rings are re-issued on the new one', T, async () => {
    freshImage();
    // The old device stops taking chains after 100 completions: what the load submits then stays in
    // its rings until the suspend, and must complete on the new device.
    const blk = await openBlk('mock:blk', mockFile({ suspend: true, fault: 'stall', faultAfter: 100 }));
    const load = startLoad(blk, 21);
    await progress(load, 80);
    while (blk.device.queueDrivers.every((q) => q.onDevice === 0)) await new Promise((r) => setImmediate(r));
    const r = await blk.handOver('mock:blk', mockFile());
    assert.equal(r.method, 'suspend');
    assert.ok(r.reissued > 0, `re-issued ${r.reissued}`);
    await progress(load, 300);
    await load.stop();
    assert.deepEqual(load.failures, []);
    assert.deepEqual(load.mismatches, []);
    await blk.close();
    checkImage(load.version);
  });

  test('the old device breaks mid-switch (its suspend fails): its chains are re-issued', T, async () => {
    freshImage();
    const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 64, ...mockFile({ failSuspend: true }) });
    const load = startLoad(blk, 7);
    await progress(load, 300);
    const r = await blk.handOver('mock:blk', mockFile());
    assert.equal(r.method, 'reset');
    await progress(load, 300);
    await load.stop();
    assert.deepEqual(load.failures, []);
    assert.deepEqual(load.mismatches, []);
    await blk.close();
    checkImage(load.version);
  });

  test('a drain that runs out of time resets the old device and re-issues what it held', T, async () => {
    freshImage();
    // The old device stops completing after 100 requests: the drain waits its requestTimeout out.
    const blk = await openBlk('mock:blk', {
      queueSize: 64,
      requestTimeout: 400,
      ...mockFile({ fault: 'stall', faultAfter: 100 }),
    });
    const timeouts: unknown[] = [];
    blk.on('timeout', (e) => timeouts.push(e));
    const load = startLoad(blk, 3);
    await progress(load, 50);
    const r = await blk.handOver('mock:blk', mockFile());
    assert.equal(r.method, 'reset');
    assert.ok(r.reissued > 0, 'the stalled device held chains');
    await progress(load, 300);
    await load.stop();
    assert.deepEqual(load.failures, [], 'no request failed, not even those the stalled device held');
    assert.deepEqual(load.mismatches, []);
    assert.deepEqual(timeouts, [], "the old device's timeout was not reported");
    await blk.close();
    checkImage(load.version);
  });

  test('requests issued during the switch wait and complete on the new device', T, async () => {
    freshImage();
    // Completions take 100 ms: the drain lasts about that long, and the requests made meanwhile wait.
    const blk = await openBlk('mock:blk', mockFile({ completionDelayMs: 100 }));
    const old = blk.device;
    const first = blk.write(0, new Uint8Array(BLOCK).fill(1));
    const moving = blk.handOver('mock:blk', mockFile());
    // The switch begins once the new device is up: from then on blk.device is the new one.
    while (blk.device === old) await new Promise((r) => setImmediate(r));
    assert.equal(old.state, 'open', 'the old device is still draining');
    const during = blk.write(BLOCK, new Uint8Array(BLOCK).fill(2));
    const r = await moving;
    assert.equal(r.method, 'drain');
    await Promise.all([first, during]);
    const back = await blk.read(0, new Uint8Array(2 * BLOCK));
    assert.deepEqual([back[0], back[BLOCK]], [1, 2]);
    await blk.close();
  });

  test('allocBuffer buffers keep working on the new device, and freeBuffer frees them there', T, async () => {
    freshImage();
    const blk = await openBlk('mock:blk', mockFile({ strictDmaUpdates: true }));
    const kept = blk.allocBuffer(BLOCK).fill(7);
    await blk.write(0, kept);
    const old = blk.device;
    await blk.handOver('mock:blk', mockFile({ strictDmaUpdates: true }));
    assert.notEqual(blk.device, old);
    assert.equal(old.state, 'closed');
    assert.equal(kept.length, BLOCK, 'the old device closing did not detach the buffer');
    kept.fill(0);
    await blk.read(0, kept);
    assert.equal(kept[100], 7);
    blk.freeBuffer(kept);
    assert.equal(kept.length, 0, 'freed on the new device: detached');
    await blk.close();
  });
});

describe('blk.handOver() refusals and failures leave the driver on its device', () => {
  async function stillWorks(blk: BlkDevice, path = 'mock:blk'): Promise<void> {
    assert.equal(blk.device.path, path);
    assert.equal(blk.device.state, 'open');
    const buf = new Uint8Array(BLOCK).fill(9);
    await blk.write(SPARE, buf);
    const back = await blk.read(SPARE, new Uint8Array(BLOCK));
    assert.equal(back[17], 9);
  }

  test('incompatible devices are RangeErrors', T, async () => {
    const blk = await openBlk('mock:blk', { numQueues: 2, mock: { capacity: SIZE, numQueues: 2, blockSize: 4096 } });
    const load = startLoad(blk, 5, 8);
    const refused: [string, MockOptions, RegExp][] = [
      ['capacity', { capacity: 2 * SIZE, numQueues: 2, blockSize: 4096 }, /capacity/],
      ['block size', { capacity: SIZE, numQueues: 2, blockSize: 512 }, /block size/],
      ['read-only', { capacity: SIZE, numQueues: 2, blockSize: 4096, readOnly: true }, /read-only/],
      ['queues', { capacity: SIZE, numQueues: 1, blockSize: 4096 }, /request queues/],
      ['queue size', { capacity: SIZE, numQueues: 2, blockSize: 4096, maxQueueSize: 64 }, /queue 0/],
      ['size_max', { capacity: SIZE, numQueues: 2, blockSize: 4096, sizeMax: 4096 }, /size_max/],
    ];
    for (const [what, mock, message] of refused) {
      await assert.rejects(blk.handOver('mock:blk', { mock }), (e: Error) => {
        assert.ok(e instanceof RangeError, `${what}: ${e.message}`);
        assert.match(e.message, message);
        return true;
      });
      await stillWorks(blk);
    }
    // 4 KiB segments, 126 per request: a device taking 64 per request cannot carry the requests.
    const small = await openBlk('mock:blk', { mock: { capacity: SIZE, sizeMax: 4096 } });
    await assert.rejects(
      small.handOver('mock:blk', { mock: { capacity: SIZE, sizeMax: 4096, segMax: 64 } }),
      (e: Error) => e instanceof RangeError && /segments per request/.test(e.message),
    );
    await stillWorks(small);
    await small.close();
    await assert.rejects(blk.handOver('mock:net'), (e: VdpaError) => e instanceof VdpaError && e.code === 'ENODEV');
    await stillWorks(blk);
    await load.stop();
    assert.deepEqual(load.failures, []);
    assert.deepEqual(load.mismatches, []);
    await blk.close();
  });

  test('a new device that fails to open or to negotiate is a VdpaError', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: SIZE } });
    await assert.rejects(
      blk.handOver('/dev/vhost-vdpa-4095'),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'ENOENT',
    );
    await stillWorks(blk);
    await assert.rejects(
      blk.handOver('mock:blk', { mock: { capacity: SIZE, fault: 'no-features-ok' } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'EOPNOTSUPP' && /FEATURES_OK/.test(e.message),
    );
    await stillWorks(blk);
    await blk.close();
  });

  test('bad arguments are TypeErrors and RangeErrors', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: SIZE } });
    await assert.rejects(blk.handOver(1 as unknown as string), TypeError);
    await assert.rejects(blk.handOver('mock:blk', { signal: 'x' as unknown as AbortSignal }), TypeError);
    await assert.rejects(blk.handOver('mock:blk', { timeout: 0 }), RangeError);
    await assert.rejects(blk.handOver('mock:blk', { drain: 1 as unknown as boolean }), TypeError);
    await assert.rejects(blk.handOver('nowhere'), (e: VdpaError) => e.code === 'EINVAL');
    await stillWorks(blk);
    await blk.close();
  });

  test('two hand-overs at once: the second is EBUSY, the first completes', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: SIZE } });
    const first = blk.handOver('mock:blk', { mock: { capacity: SIZE } });
    await assert.rejects(
      blk.handOver('mock:blk', { mock: { capacity: SIZE } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'EBUSY',
    );
    const r = await first;
    assert.equal(r.to, 'mock:blk');
    await stillWorks(blk);
    // And one after the other is fine.
    await blk.handOver('mock:blk', { mock: { capacity: SIZE } });
    await stillWorks(blk);
    await blk.close();
  });

  test('a hand-over requested during close is EBADF; a close during a hand-over cancels it', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: SIZE } });
    const closing = blk.close();
    await assert.rejects(blk.handOver('mock:blk'), (e: VdpaError) => e instanceof VdpaError && e.code === 'EBADF');
    await closing;

    const blk2 = await openBlk('mock:blk', { mock: { capacity: SIZE } });
    const moving = assert.rejects(
      blk2.handOver('mock:blk', { mock: { capacity: SIZE } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'EBADF',
    );
    await blk2.close();
    await moving;
    assert.equal(blk2.device.state, 'closed');
  });

  test('abort and timeout of the hand-over', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: SIZE } });
    const load = startLoad(blk, 9, 8);
    await assert.rejects(blk.handOver('mock:blk', { signal: AbortSignal.abort('no') }), AbortError);
    const ac = new AbortController();
    const moving = blk.handOver('mock:blk', { signal: ac.signal, mock: { capacity: SIZE } });
    ac.abort('changed my mind');
    await assert.rejects(moving, (e: AbortError) => e instanceof AbortError && e.cause === 'changed my mind');
    await stillWorks(blk);
    // Opening the new device takes 500 ms: a 20 ms timeout ends the hand-over first.
    await assert.rejects(
      blk.handOver('mock:blk', { timeout: 20, mock: { capacity: SIZE, openDelayMs: 500 } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'ETIMEDOUT',
    );
    await stillWorks(blk);
    await load.stop();
    assert.deepEqual(load.failures, []);
    assert.deepEqual(load.mismatches, []);
    await blk.close();
  });
});

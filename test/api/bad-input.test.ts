// Bad arguments: TypeError/RangeError before anything reaches native code; bad specs and closed
// devices: VdpaError with a code (and a hint where a fix is known).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VdpaError, openBlk, openDevice, openNet, type BlkDevice, type BlkOp } from '../../lib';
import { TEST_TIMEOUT, failsWith, rejectsWithCode } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
type Any = never; // casts for deliberately wrong arguments

async function openError(p: () => Promise<unknown>): Promise<unknown> {
  try {
    await p();
  } catch (e) {
    return e;
  }
  assert.fail('expected the open to fail');
}

describe('bad input', () => {
  test('wrong types for open', T, async () => {
    await failsWith(() => openBlk(42 as Any), TypeError, 'openBlk(number)');
    await failsWith(() => openNet(undefined as Any), TypeError, 'openNet(undefined)');
    await failsWith(() => openDevice({} as Any), TypeError, 'openDevice(object)');
    await failsWith(() => openBlk('mock:blk', 'fast' as Any), TypeError, 'options a string');
    await failsWith(() => openBlk('mock:blk', null as Any), TypeError, 'options null');
    await failsWith(() => openBlk('mock:blk', { mock: { capacity: '1M' as Any } }), TypeError, 'capacity a string');
    await failsWith(
      () => openBlk('mock:blk', { mock: { capacity: 1000 } }),
      RangeError,
      'capacity not a multiple of 512',
    );
    await failsWith(() => openBlk('mock:blk', { mock: { capacity: -512 } }), RangeError, 'negative capacity');
    await failsWith(() => openNet('mock:net', { mock: { mac: [1, 2, 3, 4, 5, 6] as Any } }), TypeError, 'mac an array');
    await failsWith(() => openNet('mock:net', { mock: { mac: new Uint8Array(5) } }), RangeError, 'mac 5 bytes');
    await failsWith(() => openNet('mock:net', { mock: { mtu: 10 } }), RangeError, 'mtu too small');
  });

  test('queueSize and numQueues', T, async () => {
    for (const q of [3, 100, 0, -64, 65536, 1.5])
      await failsWith(() => openBlk('mock:blk', { queueSize: q }), RangeError, `blk queueSize ${q}`);
    for (const q of [3, 100, 0])
      await failsWith(() => openNet('mock:net', { queueSize: q }), RangeError, `net queueSize ${q}`);
    await failsWith(() => openBlk('mock:blk', { queueSize: '64' as Any }), TypeError, 'queueSize a string');
    await failsWith(() => openBlk('mock:blk', { numQueues: 0 }), RangeError, 'numQueues 0');
    // These need the device's answer (opening runs on the threadpool): refused after it.
    await assert.rejects(openBlk('mock:blk', { numQueues: 4, mock: { numQueues: 2 } }), RangeError);
    await assert.rejects(openBlk('mock:blk', { queueSize: 256, mock: { maxQueueSize: 128 } }), RangeError);
    // After all these refusals a device still opens (nothing leaked or stuck).
    const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 32, mock: { numQueues: 4 } });
    assert.equal(blk.numQueues, 2);
    assert.equal(blk.queueSize, 32);
    await blk.close();
  });

  test('mock settings live under options.mock; the driver queue count is not the device one', T, async () => {
    // The old top-level names are refused with a pointer to where they went, not silently ignored.
    for (const key of ['capacity', 'deviceQueues', 'fault', 'mtu', 'segMax'])
      await failsWith(() => openBlk('mock:blk', { [key]: 1 } as Any), TypeError, `top-level ${key}`);
    await failsWith(() => openBlk('mock:blk', { mock: { queues: 2 } as Any }), TypeError, 'unknown mock key');
    await failsWith(() => openBlk('mock:blk', { mock: 'big' as Any }), TypeError, 'mock a string');
    // Not a mock device: a mock setting cannot apply, so it is an error (before any file is opened).
    for (const spec of ['/dev/vhost-vdpa-999', 'vfio:0000:00:03.0'])
      await failsWith(() => openBlk(spec, { mock: { capacity: 1 << 20 } }), TypeError, `mock options on ${spec}`);
    // openBlk's numQueues is what the driver uses; the mock offers mock.numQueues (default 1).
    // (the device's answer is needed: refused once it came back from the threadpool)
    await assert.rejects(openBlk('mock:blk', { numQueues: 2 }), RangeError, 'two queues on a one-queue device');
    const blk = await openBlk('mock:blk', { mock: { numQueues: 4, capacity: 1 << 20 } });
    assert.equal(blk.numQueues, 1, 'the driver uses one queue unless asked for more');
    assert.equal(blk.device.maxQueues, 4, 'the device offers what mock.numQueues says');
    assert.equal(blk.capacity, 1 << 20);
    await blk.close();
    // The ranges the native parser enforces, checked first in TypeScript with the same bounds.
    for (const [mock, cls] of [
      [{ numQueues: 65 }, RangeError],
      [{ numQueues: 0 }, RangeError],
      [{ maxQueueSize: 32769 }, RangeError],
      [{ segMax: 4097 }, RangeError],
      [{ sizeMax: 511 }, RangeError],
      [{ blockSize: 65537 }, RangeError],
      [{ capacity: 2 ** 50 + 512 }, RangeError],
      [{ faultAfter: 2 ** 32 }, RangeError],
      [{ readOnly: 1 }, TypeError],
      [{ fault: 7 }, TypeError],
    ] as const)
      await failsWith(() => openBlk('mock:blk', { mock: mock as Any }), cls, `mock ${JSON.stringify(mock)}`);
    const edge = await openBlk('mock:blk', { mock: { numQueues: 64, segMax: 4096, sizeMax: 512, blockSize: 4096 } });
    assert.equal(edge.device.maxQueues, 64);
    assert.equal(edge.blockSize, 4096);
    await edge.close();
  });

  test('unknown specs: VdpaError with a code and a hint', T, async () => {
    for (const [spec, code] of [
      ['mock:nope', 'EINVAL'],
      ['foo', 'EINVAL'],
      ['', 'EINVAL'],
      ['/dev/vhost-vdpa-x', 'EINVAL'],
      ['/dev/vhost-vdpa-999', 'ENOENT'],
    ]) {
      const e = await openError(() => openDevice(spec as string));
      assert.ok(e instanceof VdpaError, `${spec}: ${String(e)}`);
      assert.equal(e.code, code, `${spec}: ${e.message}`);
      assert.ok(e.errno < 0);
      assert.equal(e.path, spec);
      assert.equal(typeof e.hint, 'string', `${spec}: hint`);
      assert.ok((e.hint as string).length > 0);
      assert.ok(e.message.includes(e.code));
    }
    const e = await openError(() => openBlk('/dev/vhost-vdpa-999'));
    assert.ok(e instanceof VdpaError && e.code === 'ENOENT', String(e));
  });

  test('unknown fault name -> RangeError', T, async () => {
    await failsWith(() => openBlk('mock:blk', { mock: { fault: 'explode' } }), RangeError, 'unknown fault');
    await failsWith(() => openNet('mock:net', { mock: { fault: 'explode' } }), RangeError, 'unknown fault on net');
    await failsWith(
      () => openBlk('mock:blk', { mock: { fault: 'stall', faultAfter: -1 } }),
      RangeError,
      'negative faultAfter',
    );
  });

  test('openBlk on a net device and openNet on a blk device -> ENODEV', T, async () => {
    const a = await openError(() => openBlk('mock:net'));
    assert.ok(a instanceof VdpaError && a.code === 'ENODEV', String(a));
    const b = await openError(() => openNet('mock:blk'));
    assert.ok(b instanceof VdpaError && b.code === 'ENODEV', String(b));
  });

  describe('blk arguments', () => {
    let blk: BlkDevice;
    const cap = 1 << 20;
    test('open', T, async () => {
      blk = await openBlk('mock:blk', { mock: { capacity: cap } });
    });
    test('offsets, lengths and buffers', T, async () => {
      const b = new Uint8Array(512);
      await failsWith(() => blk.read('0' as Any, b), TypeError, 'offset a string');
      await failsWith(() => blk.write(0n as Any, b), TypeError, 'offset a bigint');
      await failsWith(() => blk.read(undefined as Any, b), TypeError, 'offset undefined');
      await failsWith(() => blk.read(0, [0, 0] as Any), TypeError, 'buffer an array');
      await failsWith(() => blk.write(0, 'data' as Any), TypeError, 'buffer a string');
      await failsWith(() => blk.write(0, new Uint16Array(256) as Any), TypeError, 'buffer a Uint16Array');
      await failsWith(() => blk.write(0, new ArrayBuffer(512) as Any), TypeError, 'buffer an ArrayBuffer');
      for (const off of [-512, 512.5, NaN, Infinity, 2 ** 53, 2 ** 64, cap, cap + 512, 1, 511])
        await failsWith(() => blk.read(off, b), RangeError, `read at ${off}`);
      await failsWith(() => blk.write(0, new Uint8Array(513)), RangeError, 'length 513');
      await failsWith(() => blk.write(0, new Uint8Array(0)), RangeError, 'length 0');
      for (const [off, len] of [
        [0, 0],
        [0, -512],
        [0, 100],
        [1, 512],
        [cap, 512],
        [0, cap + 512],
        [0, 1.5],
        [-512, 512],
      ])
        for (const op of ['discard', 'writeZeroes'] as const)
          await failsWith(() => blk[op](off as number, len as number), RangeError, `${op}(${off}, ${len})`);
      await failsWith(() => blk.discard('0' as Any, 512), TypeError, 'discard offset a string');
      await failsWith(() => blk.writeZeroes(0, '512' as Any), TypeError, 'writeZeroes length a string');
      await failsWith(() => blk.batch('ops' as Any), TypeError, 'batch of a string');
      await failsWith(() => blk.batch([null] as Any), TypeError, 'batch entry null');
      await failsWith(() => blk.batch([{ op: 'erase', offset: 0, buffer: b }] as Any), TypeError, 'batch op unknown');
      await failsWith(
        () => blk.batch([{ op: 'read', offset: 0, buffer: 'x' }] as Any),
        TypeError,
        'batch buffer a string',
      );
      await failsWith(() => blk.batch([{ op: 'read', offset: 3, buffer: b } as BlkOp]), RangeError, 'batch unaligned');
      assert.throws(() => blk.allocBuffer(0), RangeError);
      assert.throws(() => blk.allocBuffer(-1), RangeError);
      assert.throws(() => blk.allocBuffer('4096' as Any), TypeError);
      assert.throws(() => blk.allocBuffer(4096, { hugePages: 'yes' as Any }), TypeError);
      assert.throws(() => blk.device.readConfig(-1, 4), RangeError);
      assert.throws(() => blk.device.readConfig(0, 100000), RangeError);
      assert.throws(() => blk.device.readConfig(blk.device.configSize, 1), RangeError);
      assert.throws(() => blk.device.writeConfig(0, [1] as Any), TypeError);
      // Still usable.
      await blk.write(0, new Uint8Array(512).fill(1));
    });
    test('operations on a closed device -> EBADF', T, async () => {
      await blk.close();
      const b = new Uint8Array(512);
      await rejectsWithCode(blk.read(0, b), 'EBADF', 'read');
      await rejectsWithCode(blk.write(0, b), 'EBADF', 'write');
      await rejectsWithCode(blk.flush(), 'EBADF', 'flush');
      await rejectsWithCode(blk.getId(), 'EBADF', 'getId');
      await rejectsWithCode(blk.discard(0, 512), 'EBADF', 'discard');
      assert.throws(
        () => blk.device.status(),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBADF',
      );
      assert.throws(
        () => blk.device.readConfig(0, 8),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBADF',
      );
      assert.throws(
        () => blk.allocBuffer(512),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBADF',
      );
      // Argument errors still win over EBADF: they are checked first.
      await failsWith(() => blk.read(1, b), RangeError, 'unaligned read on a closed device');
    });
  });

  test('net: frames that are not Uint8Array; closed device -> EBADF', T, async () => {
    const net = await openNet('mock:net', { queueSize: 64 });
    await failsWith(() => net.send('frame' as Any), TypeError, 'send a string');
    await failsWith(() => net.send(new Uint16Array(40) as Any), TypeError, 'send a Uint16Array');
    await failsWith(() => net.send(null as Any), TypeError, 'send null');
    await failsWith(() => net.sendBatch([new Uint8Array(60), {} as Any]), TypeError, 'sendBatch with an object');
    await failsWith(() => net.send(new Uint8Array(13)), RangeError, 'send 13 bytes');
    await failsWith(() => net.send(new Uint8Array(net.mtu + 15)), RangeError, 'send mtu+15 bytes');
    await net.close();
    await rejectsWithCode(net.send(new Uint8Array(60)), 'EBADF', 'send after close');
    await rejectsWithCode(net.sendBatch([new Uint8Array(60)]), 'EBADF', 'sendBatch after close');
    const dev = await openDevice('mock:net');
    await dev.close();
    assert.throws(
      () => dev.status(),
      (e: unknown) => e instanceof VdpaError && e.code === 'EBADF',
    );
    assert.throws(
      () => dev.allocBuffer(4096),
      (e: unknown) => e instanceof VdpaError && e.code === 'EBADF',
    );
  });
});

test('openBlk and openNet refuse an options value that is not an object, before opening anything', async () => {
  for (const open of [openBlk, openNet])
    for (const bad of [null, 5, 'x'])
      await assert.rejects(
        open('mock:blk', bad as unknown as object),
        (e: Error) => e instanceof TypeError && /options/.test(e.message),
        `${open.name}(${String(bad)})`,
      );
});

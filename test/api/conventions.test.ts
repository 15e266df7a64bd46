// The conventions of the Node ecosystem the devices follow: `await using`, a one-line util.inspect,
// typed events (also on BlkDevice/NetDevice), blk.freeBuffer, the MAC as text, featureNames naming
// every bit, transport as a union, read() resolving to its buffer. Some checks are made by tsc
// (the @ts-expect-error lines fail the build if the types are loosened).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import {
  BlkFeature,
  DeviceType,
  Feature,
  NetFeature,
  VdpaError,
  featureNames,
  openBlk,
  openDevice,
  openNet,
  type BlkDevice,
  type Device,
  type DeviceEvents,
  type NetDevice,
  type TransportName,
} from '../../lib';
import { TEST_TIMEOUT } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

describe('await using', () => {
  test('Symbol.asyncDispose exists at run time (Node 20)', () => {
    assert.equal(typeof Symbol.asyncDispose, 'symbol');
  });

  test('closes a BlkDevice, a NetDevice and a Device at the end of the block', T, async () => {
    let blk: BlkDevice | undefined;
    let net: NetDevice | undefined;
    let dev: Device | undefined;
    {
      await using b = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
      await using n = await openNet('mock:net');
      await using d = await openDevice('mock:blk');
      [blk, net, dev] = [b, n, d];
      await b.write(0, new Uint8Array(512).fill(1));
      assert.equal(b.device.closed, false);
      assert.equal(n.device.closed, false);
      assert.equal(d.closed, false);
    }
    assert.equal(blk.device.closed, true);
    assert.equal(net.device.closed, true);
    assert.equal(dev.closed, true);
  });

  test('closes the device when the block throws, and the error still propagates', T, async () => {
    let blk: BlkDevice | undefined;
    await assert.rejects(async () => {
      await using b = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
      blk = b;
      throw new Error('inside');
    }, /inside/);
    assert.equal(blk?.device.closed, true);
  });

  test('disposing a device closed already resolves (close() returns the same promise)', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    const closing = blk.close();
    assert.equal(blk[Symbol.asyncDispose](), closing);
    await closing;
  });
});

describe('util.inspect', () => {
  test('one line naming the device, its shape and state, with or without colours', T, async () => {
    const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 64, mock: { capacity: 1 << 20, numQueues: 2 } });
    const net = await openNet('mock:net', { mock: { mac: Uint8Array.of(2, 0, 0, 0xab, 0xcd, 0xef), mtu: 9000 } });
    try {
      const b = inspect(blk);
      assert.equal(
        b,
        "BlkDevice { path: 'mock:blk', transport: 'mock', capacity: 1048576, blockSize: 512, numQueues: 2, " +
          "queueSize: 64, readOnly: false, state: 'open' }",
      );
      const n = inspect(net);
      assert.equal(
        n,
        "NetDevice { path: 'mock:net', transport: 'mock', mac: '02:00:00:ab:cd:ef', mtu: 9000, queueSize: 256, " +
          "droppedFrames: 0, state: 'open' }",
      );
      const d = inspect(blk.device);
      assert.match(d, /^Device \{ path: 'mock:blk', transport: 'mock', deviceType: 'blk', features: 0x[0-9a-f]+n,/);
      assert.ok(d.includes(`features: 0x${blk.device.features.toString(16)}n`), d);
      for (const s of [inspect(blk, { colors: true }), inspect(net, { colors: true })])
        assert.ok(!s.includes('\n'), `one line: ${s}`);
      // Inside another object (which may break between its own keys) each device stays one line.
      const nested = inspect({ blk, net });
      assert.ok(nested.includes(`blk: ${b}`) && nested.includes(`net: ${n}`), nested);
      // What console.log prints is util.inspect's output.
      assert.ok(!inspect(blk, { breakLength: 20 }).includes('\n'), 'even past breakLength');
      await blk.close();
      assert.match(inspect(blk), /state: 'closed' \}$/);
    } finally {
      await blk.close();
      await net.close();
    }
  });

  test("a failed device shows state 'failed'", T, async () => {
    const blk = await openBlk('mock:blk', { requestTimeout: 50, mock: { fault: 'stall', faultAfter: 0 } });
    try {
      const timedOut = once(blk, 'timeout');
      await assert.rejects(blk.read(0, new Uint8Array(512)), (e: unknown) => (e as VdpaError).code === 'ETIMEDOUT');
      await timedOut;
      assert.equal(blk.device.state, 'failed');
      assert.match(inspect(blk), /state: 'failed' \}$/);
    } finally {
      await blk.close();
    }
    assert.equal(blk.device.state, 'closed');
  });
});

describe('typed events', () => {
  test("BlkDevice and NetDevice re-emit their device's events with the same arguments", T, async () => {
    const blk = await openBlk('mock:blk', { requestTimeout: 50, mock: { fault: 'stall', faultAfter: 0 } });
    const net = await openNet('mock:net');
    try {
      const onBlk: VdpaError[] = [];
      const onDevice: VdpaError[] = [];
      blk.on('timeout', (err) => onBlk.push(err)); // err: VdpaError, by the DeviceEvents map
      blk.device.on('timeout', (err) => onDevice.push(err));
      await assert.rejects(blk.read(0, new Uint8Array(512)));
      assert.equal(onDevice.length, 1);
      assert.deepEqual(onBlk, onDevice, 'the same error object');
      assert.equal(onBlk[0]?.code, 'ETIMEDOUT');

      // Emitted by the device, seen on the driver object: every event the map names.
      const seen: (keyof DeviceEvents)[] = [];
      const err = new VdpaError('test', { code: 'EIO', errno: -5, syscall: 'test' });
      net.on('configChange', () => seen.push('configChange'));
      net.on('needsReset', (e) => (assert.equal(e, err), seen.push('needsReset')));
      net.on('timeout', (e) => (assert.equal(e, err), seen.push('timeout')));
      net.on('removed', (e) => (assert.equal(e, err), seen.push('removed')));
      net.device.emit('configChange');
      net.device.emit('needsReset', err);
      net.device.emit('timeout', err);
      net.device.emit('removed', err);
      assert.deepEqual(seen, ['configChange', 'needsReset', 'timeout', 'removed']);
    } finally {
      await blk.close();
      await net.close();
    }
  });

  test('the event map is checked by tsc', T, async () => {
    const dev = await openDevice('mock:net');
    try {
      // @ts-expect-error an event the map does not name
      dev.on('nope', () => {});
      // @ts-expect-error 'timeout' carries a VdpaError
      dev.emit('timeout');
      dev.on('needsReset', (err) => assert.equal(typeof err.code, 'string'));
    } finally {
      await dev.close();
    }
  });
});

describe('small conveniences', () => {
  test('blk.freeBuffer frees a buffer of blk.allocBuffer', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      const buf = blk.allocBuffer(4096);
      blk.freeBuffer(buf);
      assert.equal(buf.length, 0, 'detached');
      assert.throws(() => blk.freeBuffer(buf), TypeError, 'freed already');
      assert.throws(() => blk.freeBuffer(new Uint8Array(4096)), TypeError, 'not from allocBuffer');
      await assert.rejects(blk.read(0, buf), TypeError, 'a freed buffer is refused by requests');
    } finally {
      await blk.close();
    }
  });

  test('read() resolves to the buffer it filled (DMA and ordinary memory)', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
    try {
      await blk.write(4096, new Uint8Array(4096).fill(0x5a));
      const plain = new Uint8Array(4096);
      const dma = blk.allocBuffer(4096);
      assert.equal(await blk.read(4096, plain), plain);
      assert.equal(await blk.read(4096, dma), dma);
      assert.equal(plain[100], 0x5a);
      assert.equal(dma[4095], 0x5a);
      const typed: Buffer = await blk.read(0, Buffer.alloc(512)); // the caller's type is kept
      assert.ok(Buffer.isBuffer(typed));
    } finally {
      await blk.close();
    }
  });

  test('the MAC as bytes and as aa:bb:cc:dd:ee:ff text', T, async () => {
    const mac = Uint8Array.of(0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f);
    const net = await openNet('mock:net', { mock: { mac } });
    try {
      assert.deepEqual(net.mac, mac);
      assert.equal(net.macAddress, '0a:1b:2c:3d:4e:5f');
    } finally {
      await net.close();
    }
  });

  test('transport is typed as its union', T, async () => {
    const dev = await openDevice('mock:blk');
    try {
      const t: TransportName = dev.transport;
      const exhaustive = (x: TransportName): string => {
        switch (x) {
          case 'mock':
          case 'vhost-vdpa':
          case 'vfio':
            return x;
        }
      };
      assert.equal(exhaustive(t), 'mock');
      // @ts-expect-error not a transport
      const wrong: TransportName = 'vhost-user';
      void wrong;
      assert.equal(dev.deviceType, 'blk');
    } finally {
      await dev.close();
    }
  });
});

describe('featureNames', () => {
  test('names every set bit, lowest first; unknown bits as bitN', () => {
    const f = Feature.VERSION_1 | BlkFeature.FLUSH | BlkFeature.SIZE_MAX | (1n << 41n) | (1n << 63n);
    assert.deepEqual(featureNames(f, DeviceType.blk), ['SIZE_MAX', 'FLUSH', 'VERSION_1', 'bit41', 'bit63']);
    assert.deepEqual(featureNames(0n, DeviceType.blk), []);
    assert.deepEqual(featureNames(1n << 100n), ['bit100'], 'bits past 64 too');
  });

  test('device-specific bits are named only for their own device type', () => {
    // Bit 5 is MAC for net and RO for blk.
    assert.equal(NetFeature.MAC, BlkFeature.RO);
    assert.deepEqual(featureNames(NetFeature.MAC, DeviceType.net), ['MAC']);
    assert.deepEqual(featureNames(NetFeature.MAC, DeviceType.blk), ['RO']);
    assert.deepEqual(featureNames(NetFeature.MAC), ['bit5']);
    assert.deepEqual(featureNames(NetFeature.MAC | Feature.RING_PACKED, 99), ['bit5', 'RING_PACKED']);
  });

  test('every bit of a device is accounted for: as many names as set bits', T, async () => {
    for (const spec of ['mock:blk', 'mock:net'] as const) {
      const dev = await openDevice(spec);
      try {
        const names = featureNames(dev.deviceFeatures, dev.deviceId);
        const bits = dev.deviceFeatures.toString(2).replaceAll('0', '').length;
        assert.equal(names.length, bits, `${spec}: ${names.join(' ')}`);
      } finally {
        await dev.close();
      }
    }
  });

  test('a features value that is not a bigint is a TypeError; a negative one a RangeError', () => {
    assert.throws(() => featureNames(5 as unknown as bigint), TypeError);
    assert.throws(() => featureNames(-1n), RangeError);
  });
});

// Mergeable receive buffers on mock:net: frames spread over several small receive buffers come back
// byte-exact (jumbo frames both ways), and a device whose num_buffers or lengths do not add up breaks
// the receive queue with EPROTO naming the violation, without the driver reading past a buffer.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NetFeature, mockNetFaults, openNet, type NetDevice } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, failsWith, rejectsWith, rejectsWithCode } from '../helpers/util';
import { withMockNet } from '../helpers/devices';
import { MERGEABLE_LIES } from '../helpers/net-faults';

const ETH_HEADER = 14;
const HDR = 12;

/** Sends each frame and checks it comes back byte-exact, in order. */
async function loop(net: NetDevice, frames: Uint8Array[]): Promise<void> {
  for (const f of frames) {
    const copy = f.slice();
    const rx = net.receive();
    await net.send(f);
    assertBytes(await rx, copy, `${f.length}-byte frame`);
  }
}

describe('mergeable receive buffers (mock:net)', () => {
  const rng = new Rng();

  test('negotiated by default; rxBufferSize is the buffer, not the MTU', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({ queueSize: 64, mock: { mtu: 9000 } }, async (net) => {
      assert.ok(net.device.features & NetFeature.MRG_RXBUF);
      assert.equal(net.mergeable, true);
      assert.equal(net.rxBufferSize, 2048);
      assert.equal(net.mtu, 9000);
    }),
  );

  for (const rxBufferSize of [64, 100, 2048, 4096]) {
    test(
      `MTU 9000, ${rxBufferSize}-byte buffers: frames across buffer edges come back`,
      { timeout: TEST_TIMEOUT },
      () =>
        withMockNet({ queueSize: 256, rxBufferSize, mock: { mtu: 9000 } }, async (net) => {
          const max = net.mtu + ETH_HEADER;
          const edges = [1, 2, 3, 4].flatMap((k) => [
            k * rxBufferSize - HDR - 1,
            k * rxBufferSize - HDR,
            k * rxBufferSize - HDR + 1,
          ]);
          const sizes = [ETH_HEADER, 60, 1514, 4000, max - 1, max, ...edges].filter((s) => s >= ETH_HEADER && s <= max);
          await loop(
            net,
            sizes.map((s) => rng.bytes(s)),
          );
        }),
    );
  }

  test(
    'jumbo frames in a batch of 2 x queueSize, interleaved with small ones, all arrive in order',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ queueSize: 32, rxBufferSize: 1024, mock: { mtu: 9000 } }, async (net) => {
        const frames = Array.from({ length: 64 }, (_, i) => rng.bytes(i % 2 ? 9014 : 60 + rng.below(3000)));
        const copies = frames.map((f) => f.slice());
        const got: Promise<Uint8Array>[] = copies.map(() => net.receive());
        await net.sendBatch(frames);
        for (let i = 0; i < copies.length; i++)
          assertBytes(await (got[i] as Promise<Uint8Array>), copies[i] as Uint8Array, `frame ${i}`);
      }),
  );

  test(
    'without mergeable buffers (mergeable: false) jumbo frames still come back in whole-frame buffers',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ queueSize: 16, mergeable: false, mock: { mtu: 9000 } }, async (net) => {
        assert.equal(net.device.features & NetFeature.MRG_RXBUF, 0n);
        assert.equal(net.mergeable, false);
        assert.ok(net.rxBufferSize >= 9000 + ETH_HEADER + HDR);
        await loop(net, [rng.bytes(9014), rng.bytes(60), rng.bytes(5000)]);
      }),
  );

  test('rxBufferSize: checked, and the queue must hold one largest frame', { timeout: TEST_TIMEOUT }, async () => {
    await failsWith(() => openNet('mock:net', { rxBufferSize: 63 }), RangeError, 'rxBufferSize 63');
    await failsWith(() => openNet('mock:net', { rxBufferSize: 1.5 }), RangeError, 'rxBufferSize 1.5');
    await failsWith(() => openNet('mock:net', { rxBufferSize: '2048' as unknown as number }), TypeError, 'a string');
    await failsWith(() => openNet('mock:net', { mergeable: 1 as unknown as boolean }), TypeError, 'mergeable 1');
    await rejectsWith(
      openNet('mock:net', { queueSize: 8, rxBufferSize: 1024, mock: { mtu: 9000 } }),
      RangeError,
      '8 x 1 KiB cannot hold a 9000-byte frame',
    );
    // The default grows instead: 8 buffers for 65535-byte frames.
    await withMockNet({ queueSize: 8, mock: { mtu: 65535 } }, async (net) => {
      assert.ok(net.rxBufferSize * 8 >= 65535 + ETH_HEADER + HDR);
      await loop(net, [rng.bytes(65535 + ETH_HEADER)]);
    });
  });

  test('every mergeable-buffer fault of mock:net has a test here (csum-outside: net-offloads, gso-*: net-gso)', () =>
    assert.deepEqual(
      Object.keys(MERGEABLE_LIES).sort(),
      mockNetFaults.filter((f) => f !== 'csum-outside' && !f.startsWith('gso-')).sort(),
    ));
  for (const [netFault, reason] of Object.entries(MERGEABLE_LIES)) {
    test(
      `a lying device (${netFault}) breaks the receive queue with EPROTO; sending still works`,
      { timeout: TEST_TIMEOUT },
      () =>
        withMockNet({ queueSize: 64, rxBufferSize: 1024, mock: { netFault, faultAfter: 2 } }, async (net) => {
          // Two frames get through right (one over two buffers), then the device lies about one over two.
          await loop(net, [rng.bytes(100), rng.bytes(1500)]);
          const waiting = rejectsWithCode(net.receive(), 'EPROTO', netFault);
          await net.send(rng.bytes(1500));
          const err = await waiting;
          assert.match(err.message, reason);
          assert.match(err.message, /device broke the virtio rules/);
          assert.equal(err.syscall, 'virtqueue 0');
          assert.equal(err.path, 'mock:net');
          // The queue stays broken: later receives fail the same way; transmit is another queue.
          await rejectsWithCode(net.receive(), 'EPROTO', 'receive after the violation');
          await net.send(rng.bytes(60));
          assert.equal(net.device.state, 'open');
        }),
    );
  }

  test('netFault names are checked', { timeout: TEST_TIMEOUT }, async () => {
    await failsWith(() => openNet('mock:net', { mock: { netFault: 'explode' } }), RangeError, 'unknown netFault');
    await failsWith(() => openNet('mock:net', { mock: { netFault: 3 as unknown as string } }), TypeError, 'a number');
  });
});

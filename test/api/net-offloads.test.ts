// Checksum offload as per-frame metadata on mock:net: negotiated only when asked for; a frame sent
// with { checksum } gets its Internet checksum filled in by the device, or, when the receiver takes
// partial checksums (rxChecksum), arrives marked checksumNeeded with the same start and offset; a
// device whose checksum fields point outside the frame breaks the receive queue (EPROTO).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NetFeature, mockNetFaults, openNet } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, failsWith, rejectsWithCode } from '../helpers/util';
import { withMockNet } from '../helpers/devices';

/** RFC 1071 over bytes[from..], with the 2 bytes at `at` counted as zero: the value to store there. */
function internetChecksum(bytes: Uint8Array, from: number, at: number): number {
  let sum = 0;
  for (let i = from; i < bytes.length; i += 2) {
    const hi = i === at || i === at + 1 ? 0 : (bytes[i] as number);
    const lo = i + 1 >= bytes.length || i + 1 === at || i + 1 === at + 1 ? 0 : (bytes[i + 1] as number);
    sum += (hi << 8) | lo;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

describe('checksum offload (mock:net)', () => {
  const rng = new Rng();
  // A 14-byte Ethernet header, then "transport" bytes whose checksum sits 6 bytes in (UDP's place).
  const START = 34;
  const OFFSET = 6;

  test('negotiated only when asked for', { timeout: TEST_TIMEOUT }, async () => {
    await withMockNet({}, async (net) => {
      assert.equal(net.device.features & (NetFeature.CSUM | NetFeature.GUEST_CSUM), 0n);
      const { meta } = await (async () => {
        const rx = net.receivePacket();
        await net.send(rng.bytes(100));
        return rx;
      })();
      assert.deepEqual(meta, {
        checksumNeeded: false,
        checksumValid: false,
        checksumStart: 0,
        checksumOffset: 0,
        gsoType: 'none',
        gsoSize: 0,
        headerLength: 0,
        hash: 0,
        hashType: 'none',
      });
      await rejectsWithCode(
        net.send(rng.bytes(100), { checksum: { start: START, offset: OFFSET } }),
        'EOPNOTSUPP',
        'no CSUM',
      );
    });
    await withMockNet({ txChecksum: true, rxChecksum: true }, async (net) => {
      assert.equal(
        net.device.features & (NetFeature.CSUM | NetFeature.GUEST_CSUM),
        NetFeature.CSUM | NetFeature.GUEST_CSUM,
      );
    });
  });

  for (const size of [START + OFFSET + 2, 61, 1514, 9014]) {
    test(`txChecksum: the device fills in the checksum of a ${size}-byte frame`, { timeout: TEST_TIMEOUT }, () =>
      withMockNet({ txChecksum: true, mock: { mtu: 9000 } }, async (net) => {
        const f = rng.bytes(size);
        const rx = net.receivePacket();
        await net.send(f, { checksum: { start: START, offset: OFFSET } });
        const { frame, meta } = await rx;
        assert.equal(meta.checksumNeeded, false, 'the device completed it');
        const want = f.slice();
        const c = internetChecksum(f, START, START + OFFSET);
        want[START + OFFSET] = c >> 8;
        want[START + OFFSET + 1] = c & 0xff;
        assertBytes(frame, want, 'frame with its checksum');
      }),
    );
  }

  test(
    'rxChecksum too: the partial checksum arrives as it was sent, marked checksumNeeded',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ txChecksum: true, rxChecksum: true, rxBufferSize: 512 }, async (net) => {
        const f = rng.bytes(1500);
        const copy = f.slice();
        const plain = rng.bytes(80);
        const got: { frame: Uint8Array; checksumNeeded: boolean; start: number; offset: number }[] = [];
        const loop = (async () => {
          for await (const { frame, meta } of net.packets()) {
            got.push({
              frame,
              checksumNeeded: meta.checksumNeeded,
              start: meta.checksumStart,
              offset: meta.checksumOffset,
            });
            if (got.length === 2) return;
          }
        })();
        await net.send(f, { checksum: { start: START, offset: OFFSET } });
        await net.send(plain);
        await loop;
        assertBytes(got[0]?.frame as Uint8Array, copy, 'partial frame unchanged');
        assert.deepEqual(
          got.map(({ checksumNeeded, start, offset }) => [checksumNeeded, start, offset]),
          [
            [true, START, OFFSET],
            [false, 0, 0],
          ],
        );
        // receive() is the plain path: the same frames, no metadata.
        const rx = net.receive();
        await net.send(f, { checksum: { start: START, offset: OFFSET } });
        assertBytes(await rx, copy, 'receive() of a partial frame');
      }),
  );

  test('bad checksum options are TypeError/RangeError before anything is sent', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({ txChecksum: true }, async (net) => {
      const f = rng.bytes(100);
      await failsWith(() => net.send(f, { checksum: { start: 99, offset: 0 } }), RangeError, 'outside the frame');
      await failsWith(() => net.send(f, { checksum: { start: -1, offset: 0 } }), RangeError, 'negative start');
      await failsWith(
        () => net.send(f, { checksum: 5 as unknown as { start: number; offset: number } }),
        TypeError,
        'number',
      );
      await failsWith(
        () => net.sendBatch([f, rng.bytes(20)], { checksum: { start: 14, offset: 6 } }),
        RangeError,
        'batch',
      );
      await failsWith(() => openNet('mock:net', { txChecksum: 'yes' as unknown as boolean }), TypeError, 'txChecksum');
    }),
  );

  test(
    'a device whose checksum fields point outside the frame breaks the receive queue',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ rxChecksum: true, mock: { netFault: 'csum-outside' } }, async (net) => {
        assert.ok(mockNetFaults.includes('csum-outside'));
        const waiting = rejectsWithCode(net.receivePacket(), 'EPROTO', 'csum-outside');
        await net.send(rng.bytes(100));
        const err = await waiting;
        assert.match(err.message, /checksum at 99 \+ 0 is outside its 100 bytes/);
      }),
  );
});

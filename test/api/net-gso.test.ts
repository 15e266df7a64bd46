// Segmentation offload (GSO) on mock:net: negotiated only when asked for; a large frame sent with
// { gso } comes back whole, its header in PacketMeta, to a driver that negotiated the GUEST_
// features, and otherwise segmented by the device, each segment checked byte for byte against
// frames built independently here (test/helpers/gso.ts); a device whose segmentation header does
// not add up breaks the receive queue (EPROTO).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NetFeature, createVduseNet, mockNetFaults, openNet, type NetDevice, type NetOptions } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, failsWith, rejectsWithCode } from '../helpers/util';
import { withMockNet } from '../helpers/devices';
import { TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, buildFrame, expectedSegments, type FrameSpec } from '../helpers/gso';

const TX: NetOptions = { txChecksum: true, txGso: true };
const BOTH: NetOptions = { ...TX, rxChecksum: true, rxGso: true };
const HOST = NetFeature.HOST_TSO4 | NetFeature.HOST_TSO6 | NetFeature.HOST_USO;
const GUEST = NetFeature.GUEST_TSO4 | NetFeature.GUEST_TSO6 | NetFeature.GUEST_USO4 | NetFeature.GUEST_USO6;

function gsoOf(
  spec: FrameSpec,
  size: number,
): {
  frame: Uint8Array;
  options: { checksum: { start: number; offset: number }; gso: { type: 'tcpv4' | 'tcpv6' | 'udp'; size: number } };
  headerLength: number;
} {
  const b = buildFrame({ ...spec, partial: true });
  const type = spec.udp ? 'udp' : spec.ipv6 ? 'tcpv6' : 'tcpv4';
  return {
    frame: b.frame,
    headerLength: b.headerLength,
    options: { checksum: { start: b.l4, offset: spec.udp ? 6 : 16 }, gso: { type, size } },
  };
}

/** The next `n` frames received. */
async function receiveN(net: NetDevice, n: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  for await (const f of net.frames()) {
    got.push(f);
    if (got.length === n) break;
  }
  return got;
}

describe('segmentation offload (mock:net)', () => {
  const rng = new Rng();

  test('negotiated only when asked for; EOPNOTSUPP without it', { timeout: TEST_TIMEOUT }, async () => {
    const { frame, options } = gsoOf({ payload: rng.bytes(3000) }, 1448);
    await withMockNet({ txChecksum: true, rxChecksum: true }, async (net) => {
      assert.equal(net.device.features & (HOST | GUEST), 0n);
      await rejectsWithCode(net.send(frame, options), 'EOPNOTSUPP', 'no HOST_TSO4');
    });
    await withMockNet(TX, async (net) => assert.equal(net.device.features & (HOST | GUEST), HOST));
    await withMockNet(BOTH, async (net) => assert.equal(net.device.features & (HOST | GUEST), HOST | GUEST));
    // A device that offers none: txGso negotiates nothing, and a gso send is refused.
    await withMockNet({ ...BOTH, mock: { gso: false } }, async (net) => {
      assert.equal(net.device.features & (HOST | GUEST), 0n);
      assert.equal(net.device.features & NetFeature.CSUM, NetFeature.CSUM);
      const err = await rejectsWithCode(net.send(frame, options), 'EOPNOTSUPP', 'not offered');
      assert.match(err.message, /VIRTIO_NET_F_HOST_TSO4/);
    });
  });

  test('bad options are TypeError/RangeError before anything is sent', { timeout: TEST_TIMEOUT }, async () => {
    await failsWith(() => openNet('mock:net', { txGso: true }), TypeError, 'txGso without txChecksum');
    await failsWith(() => openNet('mock:net', { rxGso: true }), TypeError, 'rxGso without rxChecksum');
    await failsWith(() => openNet('mock:net', { ...TX, txGso: 1 as unknown as boolean }), TypeError, 'txGso 1');
    await withMockNet(TX, async (net) => {
      const { frame, options } = gsoOf({ payload: rng.bytes(3000) }, 1448);
      const { checksum, gso } = options;
      await failsWith(() => net.send(frame, { gso }), RangeError, 'gso without checksum');
      await failsWith(() => net.send(frame, { checksum, gso: { ...gso, size: 0 } }), RangeError, 'size 0');
      await failsWith(() => net.send(frame, { checksum, gso: { ...gso, size: 65536 } }), RangeError, 'size 65536');
      await failsWith(
        () => net.send(frame, { checksum, gso: { ...gso, type: 'ufo' as 'udp' } }),
        RangeError,
        'unknown type',
      );
      await failsWith(() => net.send(frame, { checksum, gso: 3 as unknown as typeof gso }), TypeError, 'gso 3');
      await failsWith(
        () => net.send(frame, { checksum: { ...checksum, offset: 6 }, gso }),
        RangeError,
        'TCP checksum not at 16',
      );
      await failsWith(
        () => net.send(frame, { checksum, gso: { ...gso, headerLength: frame.length + 1 } }),
        RangeError,
        'headerLength past the frame',
      );
      const huge = gsoOf({ ipv6: true, payload: rng.bytes(65550 - 74 + 1) }, 1440);
      assert.equal(huge.frame.length, 65551);
      await failsWith(() => net.send(huge.frame, huge.options), RangeError, '65551 bytes');
      await failsWith(() => net.send(frame, { checksum }), RangeError, '3054 bytes without gso');
      await failsWith(() => net.sendBatch([frame, rng.bytes(20)], options), RangeError, 'a batch with a 20-byte frame');
    });
  });

  test('createVduseNet: offloads is checked before anything is created', { timeout: TEST_TIMEOUT }, async () => {
    const ok = { name: 'gsocheck', controlPath: '/nonexistent/vduse-control' };
    await failsWith(
      () => createVduseNet({ ...ok, offloads: 1 as unknown as { gso: boolean } }),
      TypeError,
      'offloads 1',
    );
    await failsWith(
      () => createVduseNet({ ...ok, offloads: { gso: 'yes' as unknown as boolean } }),
      TypeError,
      'offloads.gso a string',
    );
  });

  const cases: { name: string; spec: FrameSpec; size: number }[] = [
    {
      name: 'TCPv4, 20 segments',
      spec: { payload: new Uint8Array(0), flags: TCP_ACK | TCP_PSH | TCP_FIN },
      size: 1448,
    },
    {
      name: 'TCPv4 with IP and TCP options, CWR',
      spec: { payload: new Uint8Array(0), ipOptions: 8, tcpOptions: 12, flags: TCP_ACK | TCP_CWR | TCP_PSH },
      size: 1000,
    },
    { name: 'TCPv4 behind a VLAN tag', spec: { payload: new Uint8Array(0), vlan: true }, size: 536 },
    { name: 'TCPv6', spec: { payload: new Uint8Array(0), ipv6: true, flags: TCP_ACK | TCP_FIN }, size: 1440 },
    { name: 'UDP over IPv4 (USO)', spec: { payload: new Uint8Array(0), udp: true }, size: 1472 },
    { name: 'UDP over IPv6 (USO)', spec: { payload: new Uint8Array(0), udp: true, ipv6: true }, size: 1452 },
  ];
  for (const { name, spec, size } of cases) {
    test(`without rxGso the device segments: ${name}, byte for byte`, { timeout: TEST_TIMEOUT }, () =>
      withMockNet(TX, async (net) => {
        // A payload that is not a multiple of the size, one smaller than it, and one of exactly 2 sizes.
        for (const length of [size * 20 - 7, size - 1, size * 2, 1]) {
          const s: FrameSpec = {
            ...spec,
            payload: rng.bytes(Math.min(length, 60000)),
            seq: rng.next(),
            id: rng.below(65536),
          };
          const want = expectedSegments(s, size);
          const { frame, options } = gsoOf(s, size);
          const got = receiveN(net, want.length);
          await net.send(frame, options);
          const frames = await got;
          assert.equal(frames.length, want.length);
          for (let i = 0; i < want.length; i++)
            assertBytes(
              frames[i] as Uint8Array,
              want[i] as Uint8Array,
              `${name}: segment ${i} of ${want.length} (${length} bytes)`,
            );
          assert.ok(
            frames.every((f) => f.length <= net.mtu + 18),
            'every segment fits the MTU',
          );
        }
      }),
    );
  }

  test('with rxGso a large frame arrives whole, its header in PacketMeta', { timeout: TEST_TIMEOUT }, async () => {
    for (const opts of [{ rxBufferSize: 2048 }, { mergeable: false }, { packed: true }] as NetOptions[]) {
      await withMockNet({ ...BOTH, ...opts }, async (net) => {
        for (const spec of [
          { payload: rng.bytes(60000) },
          { payload: rng.bytes(65550 - 74), ipv6: true },
          { payload: rng.bytes(20000), udp: true },
        ] as FrameSpec[]) {
          const { frame, options, headerLength } = gsoOf(spec, 1400);
          const copy = frame.slice();
          const rx = net.receivePacket();
          await net.send(frame, options);
          const { frame: got, meta } = await rx;
          assertBytes(got, copy, `whole ${copy.length}-byte frame (${JSON.stringify(opts)})`);
          assert.deepEqual(meta, {
            checksumNeeded: true,
            checksumValid: false,
            checksumStart: options.checksum.start,
            checksumOffset: options.checksum.offset,
            gsoType: options.gso.type,
            gsoSize: 1400,
            headerLength,
            hash: 0,
            hashType: 'none',
          });
        }
        // A plain frame after them is plain.
        const rx = net.receivePacket();
        await net.send(rng.bytes(100));
        assert.equal((await rx).meta.gsoType, 'none');
        if (opts.mergeable === false) assert.ok(net.rxBufferSize >= 65550 + 12);
      });
    }
  });

  test('sendBatch: every frame segmented (or whole) as its own', { timeout: TEST_TIMEOUT }, async () => {
    const specs: FrameSpec[] = [1, 2, 3].map((k) => ({ payload: rng.bytes(3000 * k), seq: rng.next() }));
    const built = specs.map((s) => gsoOf(s, 1448));
    const start = built[0]?.options.checksum.start as number;
    const options = { checksum: { start, offset: 16 }, gso: { type: 'tcpv4' as const, size: 1448 } };
    await withMockNet(TX, async (net) => {
      const want = specs.flatMap((s) => expectedSegments(s, 1448));
      const got = receiveN(net, want.length);
      await net.sendBatch(
        built.map((b) => b.frame),
        options,
      );
      const frames = await got;
      for (let i = 0; i < want.length; i++) assertBytes(frames[i] as Uint8Array, want[i] as Uint8Array, `segment ${i}`);
    });
    await withMockNet(BOTH, async (net) => {
      const copies = built.map((b) => b.frame.slice());
      const got = receiveN(net, 3);
      await net.sendBatch(
        built.map((b) => b.frame),
        options,
      );
      const frames = await got;
      for (let i = 0; i < 3; i++) assertBytes(frames[i] as Uint8Array, copies[i] as Uint8Array, `whole frame ${i}`);
    });
  });

  test('a frame that is not what its gso type says goes nowhere', { timeout: TEST_TIMEOUT }, () =>
    withMockNet(TX, async (net) => {
      const v6 = gsoOf({ ipv6: true, payload: rng.bytes(3000) }, 1440);
      const rx = net.receive();
      // TCPv6 sent as tcpv4: the device finds no IPv4 header and drops it; the next frame arrives.
      await net.send(v6.frame, { ...v6.options, gso: { type: 'tcpv4', size: 1440 } });
      const plain = rng.bytes(64);
      await net.send(plain.slice());
      assertBytes(await rx, plain, 'the plain frame after the dropped one');
    }),
  );

  const lies: Record<string, { options: NetOptions; reason: RegExp }> = {
    'gso-size-zero': { options: BOTH, reason: /gso_size 0 in a received tcpv4 frame/ },
    'gso-hdrlen-past': { options: BOTH, reason: /hdr_len 1501 in a received frame of 1500 bytes/ },
    'gso-unknown-type': { options: BOTH, reason: /gso_type 2 in a received frame/ },
    'gso-not-negotiated': {
      options: { rxChecksum: true },
      reason: /gso_type 4 in a received frame, a type the driver did not negotiate/,
    },
  };
  test('every gso fault of mock:net has a test here', () =>
    assert.deepEqual(Object.keys(lies).sort(), mockNetFaults.filter((f) => f.startsWith('gso-')).sort()));
  for (const [netFault, { options, reason }] of Object.entries(lies)) {
    for (const mergeable of [true, false]) {
      test(
        `a lying device (${netFault}, mergeable ${mergeable}) breaks the receive queue`,
        { timeout: TEST_TIMEOUT },
        () =>
          withMockNet({ ...options, mergeable, mock: { netFault, faultAfter: 1 } }, async (net) => {
            const first = rng.bytes(100);
            const rx = net.receivePacket();
            await net.send(first.slice());
            assertBytes((await rx).frame, first, 'the frame before the lie');
            const waiting = rejectsWithCode(net.receivePacket(), 'EPROTO', netFault);
            await net.send(rng.bytes(1500));
            const err = await waiting;
            assert.match(err.message, reason);
            await rejectsWithCode(net.receive(), 'EPROTO', 'receive after the violation');
          }),
      );
    }
  }

  test('the plain path (no rxChecksum) breaks on a gso_type too', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({ mock: { netFault: 'gso-unknown-type' } }, async (net) => {
      const waiting = rejectsWithCode(net.receive(), 'EPROTO', 'gso_type 2 on the plain path');
      await net.send(rng.bytes(200));
      assert.match((await waiting).message, /gso_type 2/);
    }),
  );

  for (const netFault of ['mrg-extra-buffers', 'mrg-empty-buffer', 'mrg-huge-buffers']) {
    test(
      `a whole GSO frame over mergeable buffers whose num_buffers lie (${netFault}) breaks the queue`,
      { timeout: TEST_TIMEOUT },
      () =>
        withMockNet({ ...BOTH, rxBufferSize: 4096, mock: { netFault, faultAfter: 1 } }, async (net) => {
          const good = gsoOf({ payload: rng.bytes(50000) }, 1448);
          const copy = good.frame.slice();
          const rx = net.receive();
          await net.send(good.frame, good.options);
          assertBytes(await rx, copy, 'the GSO frame before the lie');
          const waiting = rejectsWithCode(net.receive(), 'EPROTO', netFault);
          const bad = gsoOf({ payload: rng.bytes(40000) }, 1448);
          await net.send(bad.frame, bad.options);
          assert.match((await waiting).message, /num_buffers|empty/);
        }),
    );
  }
});

// Receive-side scaling and hash reports on mock:net (rss: true): the Toeplitz hash against the
// published verification vectors (Microsoft's "Verifying the RSS Hash Calculation", which the virtio
// spec's hash follows), steering through the indirection table, hash_value / hash_report in the
// 20-byte header, argument checks against what the device's config advertises, and refusals.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NetFeature, VdpaError, openNet, type NetDevice, type NetHashType, type Packet } from '../../lib';
import { TEST_TIMEOUT, failsWith, rejectsWith, rejectsWithCode } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

/** The verification key of the published vectors. */
const KEY = Uint8Array.from([
  0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
  0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
  0x01, 0xfa,
]);

interface Vector {
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** The published hash over the addresses only, and over addresses and ports. */
  ip: number;
  l4: number;
}

const V4: readonly Vector[] = [
  { dst: '161.142.100.80', dport: 1766, src: '66.9.149.187', sport: 2794, ip: 0x323e8fc2, l4: 0x51ccc178 },
  { dst: '65.69.140.83', dport: 4739, src: '199.92.111.2', sport: 14230, ip: 0xd718262a, l4: 0xc626b0ea },
  { dst: '12.22.207.184', dport: 38024, src: '24.19.198.95', sport: 12898, ip: 0xd2d0a5de, l4: 0x5c2b394a },
  { dst: '209.142.163.6', dport: 2217, src: '38.27.205.30', sport: 48228, ip: 0x82989176, l4: 0xafc7327f },
  { dst: '202.188.127.2', dport: 1303, src: '153.39.163.191', sport: 44251, ip: 0x5d1809c5, l4: 0x10e828a2 },
];

const V6: readonly Vector[] = [
  {
    dst: '3ffe:2501:200:3::1',
    dport: 1766,
    src: '3ffe:2501:200:1fff::7',
    sport: 2794,
    ip: 0x2cc18cd5,
    l4: 0x40207d3d,
  },
  {
    dst: 'ff02::1',
    dport: 4739,
    src: '3ffe:501:8::260:97ff:fe40:efab',
    sport: 14230,
    ip: 0x0f0c461c,
    l4: 0xdde51bbf,
  },
  {
    dst: 'fe80::200:f8ff:fe21:67cf',
    dport: 38024,
    src: '3ffe:1900:4545:3:200:f8ff:fe21:67cf',
    sport: 44251,
    ip: 0x4b61e985,
    l4: 0x02d1feef,
  },
];

const ALL: NetHashType[] = ['ipv4', 'tcpv4', 'udpv4', 'ipv6', 'tcpv6', 'udpv6'];

function ipv4(a: string): number[] {
  return a.split('.').map(Number);
}

function ipv6(a: string): number[] {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]);
}

/**
 * An Ethernet frame to the device's own address carrying IPv4 or IPv6 and a TCP or UDP header
 * (`proto` 6 or 17; any other number: that protocol, 8 bytes of payload). `fragment` sets IPv4's MF flag.
 */
function ipFrame(mac: Uint8Array, v: Vector, proto: number, fragment = false): Uint8Array {
  const six = v.src.includes(':');
  const l4len = proto === 6 ? 20 : 8;
  const l3len = six ? 40 : 20;
  const f = new Uint8Array(14 + l3len + l4len + 16);
  const d = new DataView(f.buffer);
  f.set(mac, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  d.setUint16(12, six ? 0x86dd : 0x0800);
  const l3 = 14;
  if (six) {
    d.setUint32(l3, 0x60000000);
    d.setUint16(l3 + 4, l4len + 16);
    f[l3 + 6] = proto;
    f[l3 + 7] = 64;
    f.set(ipv6(v.src), l3 + 8);
    f.set(ipv6(v.dst), l3 + 24);
  } else {
    f[l3] = 0x45;
    d.setUint16(l3 + 2, l3len + l4len + 16);
    if (fragment) d.setUint16(l3 + 6, 0x2000);
    f[l3 + 8] = 64;
    f[l3 + 9] = proto;
    f.set(ipv4(v.src), l3 + 12);
    f.set(ipv4(v.dst), l3 + 16);
  }
  const l4 = l3 + l3len;
  d.setUint16(l4, v.sport);
  d.setUint16(l4 + 2, v.dport);
  if (proto === 6) f[l4 + 12] = 0x50;
  return f;
}

/** A frame that is not IP (an ARP-like EtherType): no hash type covers it. */
function otherFrame(mac: Uint8Array): Uint8Array {
  const f = new Uint8Array(60);
  f.set(mac, 0);
  f.set([0x02, 0, 0, 0, 0, 1], 6);
  f[12] = 0x08;
  f[13] = 0x06;
  return f;
}

/** Sends `f` and returns the packet that came back and the queue pair it arrived on. */
async function roundTrip(net: NetDevice, f: Uint8Array): Promise<{ packet: Packet; pair: number }> {
  const before = net.stats().map((s) => s.rxFrames);
  await net.send(f, { queue: 0 });
  const packet = await net.receivePacket();
  const after = net.stats().map((s) => s.rxFrames);
  const pairs = after.map((n, i) => n - (before[i] as number)).flatMap((d, i) => (d ? [i] : []));
  assert.equal(pairs.length, 1, `one pair received it: ${JSON.stringify(after)}`);
  assert.deepEqual(packet.frame, f, 'the frame came back unchanged');
  return { packet, pair: pairs[0] as number };
}

async function withNet(options: Parameters<typeof openNet>[1], fn: (net: NetDevice) => Promise<void>): Promise<void> {
  const net = await openNet('mock:net', options);
  try {
    await fn(net);
  } finally {
    await net.close();
  }
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

describe('virtio-net hash reports (mock:net rss)', () => {
  test('RSS is negotiated with the control queue; HASH_REPORT only when asked; the limits are the config', T, () =>
    withNet({ mock: { rss: true } }, async (net) => {
      assert.ok(net.device.features & NetFeature.RSS);
      assert.equal(net.device.features & NetFeature.HASH_REPORT, 0n);
      assert.deepEqual(net.rssLimits, { maxKeySize: 40, maxIndirectionTableLength: 128, hashTypes: ALL });
      // The 12-byte header path: a frame goes through and carries no hash.
      const { packet } = await roundTrip(net, ipFrame(net.mac, V4[0] as Vector, 6));
      assert.equal(packet.meta.hashType, 'none');
      assert.equal(packet.meta.hash, 0);
    }).then(() =>
      withNet({ hashReport: true, mock: { rss: true } }, async (net) => {
        assert.ok(net.device.features & NetFeature.HASH_REPORT);
        // No hash configured yet: the device reports none.
        const { packet } = await roundTrip(net, ipFrame(net.mac, V4[0] as Vector, 6));
        assert.equal(packet.meta.hashType, 'none');
      }),
    ),
  );

  for (const mergeable of [true, false])
    for (const packed of [false, true])
      test(`the published vectors (mergeable ${mergeable}, packed ${packed})`, T, () =>
        withNet({ hashReport: true, mergeable, packed, mock: { rss: true } }, async (net) => {
          await net.setHashConfig({ key: KEY, hashTypes: ALL });
          for (const v of [...V4, ...V6]) {
            const six = v.src.includes(':');
            for (const [proto, type] of [
              [6, six ? 'tcpv6' : 'tcpv4'],
              [17, six ? 'udpv6' : 'udpv4'],
            ] as const) {
              const { packet } = await roundTrip(net, ipFrame(net.mac, v, proto));
              assert.equal(packet.meta.hashType, type, `${v.src} -> ${v.dst} proto ${proto}`);
              assert.equal(
                hex(packet.meta.hash),
                hex(v.l4),
                `${type} hash of ${v.src}:${v.sport} -> ${v.dst}:${v.dport}`,
              );
            }
            // Another protocol over IP: the addresses only.
            const { packet } = await roundTrip(net, ipFrame(net.mac, v, 50));
            assert.equal(packet.meta.hashType, six ? 'ipv6' : 'ipv4');
            assert.equal(hex(packet.meta.hash), hex(v.ip), `address hash of ${v.src} -> ${v.dst}`);
          }
          // A jumbo-ish frame over several mergeable buffers keeps its report.
          const big = new Uint8Array(1514);
          big.set(ipFrame(net.mac, V4[1] as Vector, 6));
          const { packet } = await roundTrip(net, big);
          assert.equal(hex(packet.meta.hash), hex((V4[1] as Vector).l4));
        }),
      );

  test('hash types fall back as the spec says: a TCP frame without tcpv4 hashes the addresses', T, () =>
    withNet({ hashReport: true, mock: { rss: true } }, async (net) => {
      const v = V4[2] as Vector;
      await net.setHashConfig({ key: KEY, hashTypes: ['ipv4'] });
      let { packet } = await roundTrip(net, ipFrame(net.mac, v, 6));
      assert.deepEqual([packet.meta.hashType, hex(packet.meta.hash)], ['ipv4', hex(v.ip)]);
      // A fragment has no ports to hash, whatever the types.
      await net.setHashConfig({ key: KEY, hashTypes: ['ipv4', 'tcpv4'] });
      ({ packet } = await roundTrip(net, ipFrame(net.mac, v, 6, true)));
      assert.deepEqual([packet.meta.hashType, hex(packet.meta.hash)], ['ipv4', hex(v.ip)]);
      // IPv6 types only: IPv4 and non-IP frames are not hashed.
      await net.setHashConfig({ key: KEY, hashTypes: ['ipv6', 'tcpv6'] });
      ({ packet } = await roundTrip(net, ipFrame(net.mac, v, 6)));
      assert.deepEqual([packet.meta.hashType, packet.meta.hash], ['none', 0]);
      ({ packet } = await roundTrip(net, otherFrame(net.mac)));
      assert.equal(packet.meta.hashType, 'none');
    }),
  );

  test('steering: each frame lands on the pair the indirection table names for its hash', T, async () => {
    const table = [3, 1, 2, 0, 0, 2, 1, 3];
    for (const hashReport of [true, false])
      await withNet({ queuePairs: 4, hashReport, mock: { queuePairs: 4, rss: true } }, async (net) => {
        await net.setRss({ key: KEY, indirectionTable: table, hashTypes: ALL, unclassifiedQueue: 2 });
        const seen = new Set<number>();
        for (const v of [...V4, ...V6]) {
          for (const [proto, want] of [
            [6, v.l4],
            [50, v.ip],
          ] as const) {
            const { packet, pair } = await roundTrip(net, ipFrame(net.mac, v, proto));
            assert.equal(pair, table[want % table.length], `${v.src} -> ${v.dst} proto ${proto}: hash ${hex(want)}`);
            seen.add(pair);
            if (hashReport) assert.equal(hex(packet.meta.hash), hex(want));
            else assert.equal(packet.meta.hashType, 'none', 'no report without hashReport');
          }
        }
        assert.ok(seen.size >= 3, `the vectors spread over the pairs: ${[...seen].join(', ')}`);
        // Not IP: the unclassified queue.
        assert.equal((await roundTrip(net, otherFrame(net.mac))).pair, 2);
        // Only TCP over IPv4 hashed: an IPv6 frame is unclassified too.
        await net.setRss({ key: KEY, indirectionTable: [1], hashTypes: ['tcpv4'], unclassifiedQueue: 3 });
        assert.equal((await roundTrip(net, ipFrame(net.mac, V4[0] as Vector, 6))).pair, 1);
        assert.equal((await roundTrip(net, ipFrame(net.mac, V6[0] as Vector, 6))).pair, 3);
        // setHashConfig ends steering: frames go back to the pair they were sent on.
        if (hashReport) {
          await net.setHashConfig({ key: KEY, hashTypes: ALL });
          const { packet, pair } = await roundTrip(net, ipFrame(net.mac, V4[0] as Vector, 6));
          assert.equal(pair, 0);
          assert.equal(hex(packet.meta.hash), hex((V4[0] as Vector).l4));
        }
      });
  });

  test('the RSS configuration moves with a hand-over', T, () =>
    withNet({ queuePairs: 2, hashReport: true, mock: { queuePairs: 2, rss: true } }, async (net) => {
      const v = V4[0] as Vector;
      const table = [1, 0];
      await net.setRss({ key: KEY, indirectionTable: table, hashTypes: ['tcpv4'] });
      const want = table[v.l4 % 2] as number;
      assert.equal((await roundTrip(net, ipFrame(net.mac, v, 6))).pair, want);
      await assert.rejects(net.handOver('mock:net', { mock: { queuePairs: 2 } }), RangeError, 'no RSS there');
      await net.handOver('mock:net', { mock: { queuePairs: 2, rss: true } });
      const { packet, pair } = await roundTrip(net, ipFrame(net.mac, v, 6));
      assert.equal(pair, want);
      assert.equal(hex(packet.meta.hash), hex(v.l4));
    }),
  );
});

describe('setRss / setHashConfig arguments and refusals', () => {
  test('checked against the config space and the queue pairs in use: TypeError / RangeError', T, () =>
    withNet({ queuePairs: 2, hashReport: true, mock: { queuePairs: 4, rss: true } }, async (net) => {
      const ok = { key: KEY, indirectionTable: [0, 1], hashTypes: ALL };
      const bad: [unknown, new (...a: never[]) => Error, string][] = [
        [undefined, TypeError, 'no config'],
        [{ ...ok, key: [1, 2] }, TypeError, 'key not bytes'],
        [{ ...ok, key: new Uint8Array(41) }, RangeError, 'key past rss_max_key_size'],
        [{ ...ok, key: new Uint8Array(0) }, RangeError, 'empty key'],
        [{ ...ok, hashTypes: 'ipv4' }, TypeError, 'hashTypes not an array'],
        [{ ...ok, hashTypes: ['ipv5'] }, RangeError, 'unknown hash type'],
        [{ ...ok, hashTypes: ['tcpv6ex'] }, RangeError, 'a type the device does not offer'],
        [{ ...ok, indirectionTable: 1 }, TypeError, 'table not an array'],
        [{ ...ok, indirectionTable: [] }, RangeError, 'empty table'],
        [{ ...ok, indirectionTable: [0, 1, 0] }, RangeError, 'not a power of two'],
        [{ ...ok, indirectionTable: new Array<number>(256).fill(0) }, RangeError, 'past the max table length'],
        [{ ...ok, indirectionTable: [0, 2] }, RangeError, 'a pair the driver does not use'],
        [{ ...ok, indirectionTable: [0, 0.5] }, RangeError, 'not an integer'],
        [{ ...ok, unclassifiedQueue: 2 }, RangeError, 'unclassified pair not in use'],
      ];
      for (const [config, cls, what] of bad) await rejectsWith(net.setRss(config as never), cls, what);
      await rejectsWith(net.setHashConfig({ key: new Uint8Array(41), hashTypes: [] }), RangeError, 'hash key');
      await rejectsWith(net.setHashConfig({ key: KEY, hashTypes: ['udpv6ex'] }), RangeError, 'hash type');
      // The largest table the device takes and an empty type list are fine.
      await net.setRss({ ...ok, indirectionTable: new Array<number>(128).fill(1), hashTypes: [] });
      await net.setHashConfig({ key: KEY.subarray(0, 1), hashTypes: [] });
      await failsWith(() => openNet('mock:net', { hashReport: true, control: false }), TypeError, 'no control queue');
      await failsWith(() => openNet('mock:net', { hashReport: 1 as never }), TypeError, 'not a boolean');
    }),
  );

  test('without the feature: EOPNOTSUPP naming the command, before anything is sent', T, async () => {
    await withNet({}, async (net) => {
      assert.equal(net.rssLimits, undefined);
      const err = await rejectsWithCode(net.setRss({ key: KEY, indirectionTable: [0], hashTypes: ALL }), 'EOPNOTSUPP');
      assert.equal(err.syscall, 'VIRTIO_NET_CTRL_MQ_RSS_CONFIG');
      assert.match(err.message, /VIRTIO_NET_F_RSS/);
      await rejectsWithCode(net.setHashConfig({ key: KEY, hashTypes: ALL }), 'EOPNOTSUPP');
    });
    // RSS without hashReport: HASH_CONFIG needs HASH_REPORT.
    await withNet({ mock: { rss: true } }, async (net) => {
      const err = await rejectsWithCode(net.setHashConfig({ key: KEY, hashTypes: ALL }), 'EOPNOTSUPP');
      assert.match(err.message, /VIRTIO_NET_F_HASH_REPORT/);
    });
  });

  test('a device that refuses them: EIO naming the command; the driver goes on', T, () =>
    withNet(
      { queuePairs: 2, hashReport: true, mock: { queuePairs: 2, rss: true, refuseControl: 'rss' } },
      async (net) => {
        let err = await rejectsWithCode(net.setRss({ key: KEY, indirectionTable: [1], hashTypes: ALL }), 'EIO');
        assert.equal(err.syscall, 'VIRTIO_NET_CTRL_MQ_RSS_CONFIG');
        assert.match(err.message, /VIRTIO_NET_ERR/);
        err = await rejectsWithCode(net.setHashConfig({ key: KEY, hashTypes: ALL }), 'EIO');
        assert.equal(err.syscall, 'VIRTIO_NET_CTRL_MQ_HASH_CONFIG');
        const { packet } = await roundTrip(net, ipFrame(net.mac, V4[0] as Vector, 6));
        assert.equal(packet.meta.hashType, 'none');
      },
    ),
  );

  test('MQ_VQ_PAIRS_SET goes out whenever MQ is negotiated, one pair too', T, async () => {
    const err = await rejectsWithCode(openNet('mock:net', { mock: { queuePairs: 2, refuseControl: 'mq' } }), 'EIO');
    assert.equal(err.syscall, 'VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET');
    // Without MQ nothing is sent: the same refusal does not matter.
    await withNet({ mock: { refuseControl: 'mq' } }, async (net) =>
      assert.equal(net.device.features & NetFeature.MQ, 0n),
    );
  });
});

describe('NetDevice.deviceStats()', () => {
  test('on a transport without vDPA vendor statistics: EOPNOTSUPP with a hint', T, () =>
    withNet({}, async (net) => {
      const err = await rejectsWithCode(net.deviceStats(), 'EOPNOTSUPP');
      assert.ok(err instanceof VdpaError);
      assert.equal(err.syscall, 'netlink(VDPA_CMD_DEV_VSTATS_GET)');
      assert.match(err.message, /mock/);
      assert.match(err.hint ?? '', /vhost-vdpa/);
    }),
  );
});

// virtio-net features of QEMU's virtio-net-pci through VFIO (issue 11): the pair NIC 0 <-> NIC 1 of
// run.sh --net-pair, booted with --net-props mq=on,vectors=N,rss=on,hash=on (scripts/vm/test-vm.sh
// does that for every run). Asserted against what QEMU 7.2 does with the hub backend:
//   - MQ is offered and negotiated, and VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET is acknowledged; a hub port
//     is a single-queue netdev, so max_virtqueue_pairs is what the backend has: when it is 1, asking
//     for 2 pairs is EOPNOTSUPP; when it is more, frames go both ways on every pair;
//   - RSS (rss=on: QEMU's software RSS, no eBPF needed for a userspace backend): offered, its
//     config space limits, RSS_CONFIG acknowledged, frames still both ways; HASH_REPORT (hash=on) is
//     not offered: QEMU clears it for a peer without a vnet header (a hub port), so the hash values
//     QEMU computes cannot be seen here (the mock's are checked against the published vectors);
//   - the 'announce' event after QEMU's announce_self (run.sh --net-link-control carries the request
//     to the monitor), and the acknowledgement QEMU takes;
//   - per-pair stats(); deviceStats() is EOPNOTSUPP on VFIO.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import { test } from 'node:test';
import { NetFeature, openNet, type NetDevice, type NetHashType, type NetOptions, type Packet } from '../../lib';
import { ConfigView, NetConfig } from '../../lib/config';
import { rejectsWithCode } from '../helpers/util';
import { nicsByMac } from './vfio-env';
import { IN_VM, SKIP_REASON, within } from './vm-env';

const MACS = ['52:54:00:12:34:50', '52:54:00:12:34:51'];
const KEY = Uint8Array.from([
  0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
  0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
  0x01, 0xfa,
]);
/** Published Toeplitz results (addresses + ports) for these IPv4 tuples under KEY. */
const VECTORS = [
  { src: [66, 9, 149, 187], sport: 2794, dst: [161, 142, 100, 80], dport: 1766, hash: 0x51ccc178 },
  { src: [199, 92, 111, 2], sport: 14230, dst: [65, 69, 140, 83], dport: 4739, hash: 0xc626b0ea },
  { src: [24, 19, 198, 95], sport: 12898, dst: [12, 22, 207, 184], dport: 38024, hash: 0x5c2b394a },
  { src: [38, 27, 205, 30], sport: 48228, dst: [209, 142, 163, 6], dport: 2217, hash: 0xafc7327f },
  { src: [153, 39, 163, 191], sport: 44251, dst: [202, 188, 127, 2], dport: 1303, hash: 0x10e828a2 },
];
const TYPES: NetHashType[] = ['ipv4', 'tcpv4', 'udpv4', 'ipv6', 'tcpv6', 'udpv6'];
const ETHERTYPE = 0x88b5;

let found: [string, string] | undefined;
/** NIC 0 and NIC 1: from guest-tests.sh (VDPA_VFIO_NET), else found by MAC and bound here (once). */
function nics(): [string, string] {
  const pair = process.env.VDPA_VFIO_NET?.trim().split(/\s+/);
  if (pair?.length === 2) return [pair[0] as string, pair[1] as string];
  found ??= nicsByMac(MACS) as [string, string];
  return found;
}

/** A TCP/IPv4 frame from `from` to `to` with the vector's addresses and ports. */
function tcpFrame(from: NetDevice, to: NetDevice, v: (typeof VECTORS)[number]): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20 + 26);
  const d = new DataView(f.buffer);
  f.set(to.mac, 0);
  f.set(from.mac, 6);
  d.setUint16(12, 0x0800);
  f[14] = 0x45;
  d.setUint16(16, 20 + 20 + 26);
  f[22] = 64;
  f[23] = 6;
  f.set(v.src, 26);
  f.set(v.dst, 30);
  d.setUint16(34, v.sport);
  d.setUint16(36, v.dport);
  f[46] = 0x50;
  return f;
}

function tagged(from: NetDevice, to: NetDevice, tag: number): Uint8Array {
  const f = new Uint8Array(64);
  f.set(to.mac, 0);
  f.set(from.mac, 6);
  new DataView(f.buffer).setUint16(12, ETHERTYPE);
  new DataView(f.buffer).setUint32(14, tag);
  return f;
}

/** The next received packet whose bytes equal `want` (others on the hub, e.g. RARPs, are skipped). */
async function expect(net: NetDevice, want: Uint8Array, what: string): Promise<Packet> {
  for (;;) {
    const p = await within(net.receivePacket(), 20_000, what);
    if (p.frame.length === want.length && p.frame.every((b, i) => b === want[i])) return p;
  }
}

async function openPair(options: NetOptions): Promise<[NetDevice, NetDevice]> {
  const [a, b] = nics();
  const na = await openNet(`vfio:${a}`, options);
  try {
    return [na, await openNet(`vfio:${b}`, options)];
  } catch (e) {
    await na.close();
    throw e;
  }
}

if (!IN_VM) {
  test('vm virtio-net features over VFIO', { skip: SKIP_REASON }, () => {});
} else {
  test('multiqueue: MQ negotiated, VQ_PAIRS_SET acknowledged, frames both ways on every pair QEMU offers', async () => {
    const [a, b] = await openPair({});
    let max: number;
    try {
      for (const n of [a, b]) assert.ok(n.device.features & NetFeature.MQ, 'mq=on: VIRTIO_NET_F_MQ negotiated');
      const cfg = new ConfigView(a.device.readConfig(0, 10));
      max = cfg.get(NetConfig.maxVirtqueuePairs);
      console.log(`# vfio-net-features: max_virtqueue_pairs ${max} (hub backend)`);
      assert.ok(max >= 1);
      // Opening sent VQ_PAIRS_SET(1) (MQ is negotiated): QEMU acknowledged it, or the open had failed.
      for (let i = 0; i < 4; i++) {
        const f = tagged(a, b, i);
        await a.send(f);
        await expect(b, f, `frame ${i} a -> b`);
        const g = tagged(b, a, 100 + i);
        await b.send(g);
        await expect(a, g, `frame ${i} b -> a`);
      }
    } finally {
      await a.close();
      await b.close();
    }
    if (max === 1) {
      // A hub port is one queue: QEMU offers MQ with one pair, and more is refused before anything is set up.
      const err = await rejectsWithCode(openNet(`vfio:${nics()[0]}`, { queuePairs: 2 }), 'EOPNOTSUPP', 'queuePairs 2');
      assert.match(err.message, /device offers 1/);
      return;
    }
    const pairs = Math.min(max, 4);
    const [ma, mb] = await openPair({ queuePairs: pairs });
    try {
      for (let q = 0; q < pairs; q++) {
        const f = tagged(ma, mb, 1000 + q);
        await ma.send(f, { queue: q });
        await expect(mb, f, `pair ${q} a -> b`);
        const g = tagged(mb, ma, 2000 + q);
        await mb.send(g, { queue: q });
        await expect(ma, g, `pair ${q} b -> a`);
      }
      for (const n of [ma, mb])
        assert.deepEqual(
          n.stats().map((s) => s.txFrames),
          Array<number>(pairs).fill(1),
        );
    } finally {
      await ma.close();
      await mb.close();
    }
  });

  test('RSS: QEMU offers it and takes RSS_CONFIG; HASH_REPORT it withholds (the hub has no vnet header)', async () => {
    const [a, b] = await openPair({ hashReport: true });
    try {
      for (const n of [a, b]) {
        assert.ok(n.device.features & NetFeature.RSS, 'rss=on: VIRTIO_NET_F_RSS negotiated');
        // QEMU clears HASH_REPORT (with the checksum and segmentation offloads) for a peer without a
        // vnet header, as a hub port is: hash=on is accepted and not offered.
        assert.equal(n.device.deviceFeatures & NetFeature.HASH_REPORT, 0n, 'HASH_REPORT not offered');
        assert.equal(n.device.features & NetFeature.HASH_REPORT, 0n);
      }
      const limits = b.rssLimits;
      console.log(`# vfio-net-features: QEMU rss limits ${JSON.stringify(limits)}`);
      assert.ok(limits);
      assert.ok(limits.maxKeySize >= 40, 'a 40-byte key fits');
      assert.ok(limits.maxIndirectionTableLength >= 1);
      for (const t of TYPES) assert.ok(limits.hashTypes.includes(t), `QEMU computes ${t}`);
      // One pair: every bucket names pair 0. QEMU acknowledges it (else EIO) and keeps delivering.
      await b.setRss({ key: KEY, indirectionTable: [0, 0, 0, 0], hashTypes: TYPES });
      await a.setRss({ key: KEY, indirectionTable: [0], hashTypes: ['tcpv4'], unclassifiedQueue: 0 });
      for (const v of VECTORS) {
        const f = tcpFrame(a, b, v);
        await a.send(f);
        const { meta } = await expect(b, f, `a -> b ${v.src.join('.')}`);
        assert.equal(meta.hashType, 'none', 'no hash report without HASH_REPORT');
        const g = tcpFrame(b, a, v);
        await b.send(g);
        await expect(a, g, `b -> a ${v.src.join('.')}`);
      }
      // Without HASH_REPORT, HASH_CONFIG is refused before it is sent; arguments past QEMU's limits never reach it.
      await rejectsWithCode(b.setHashConfig({ key: KEY, hashTypes: TYPES }), 'EOPNOTSUPP', 'HASH_CONFIG');
      await assert.rejects(
        b.setRss({ key: new Uint8Array(limits.maxKeySize + 1), indirectionTable: [0], hashTypes: [] }),
        RangeError,
      );
      await assert.rejects(
        b.setRss({
          key: KEY,
          indirectionTable: Array<number>(limits.maxIndirectionTableLength * 2).fill(0),
          hashTypes: [],
        }),
        RangeError,
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("announce: QEMU's announce_self raises 'announce'; the acknowledgement is taken; stats count", async () => {
    const requests = process.env.VDPA_TEST_NET_LINK_REQUEST;
    assert.ok(requests, 'needs run.sh --net-link-control (VDPA_TEST_NET_LINK_REQUEST)');
    const [a, b] = await openPair({});
    try {
      assert.ok(a.device.features & NetFeature.GUEST_ANNOUNCE);
      const announced = once(a, 'announce');
      fs.writeFileSync(`${requests}.tmp`, 'announce');
      fs.renameSync(`${requests}.tmp`, requests);
      await within(announced, 30_000, "'announce' after announce_self");
      await a.acknowledgeAnnounce();
      // Traffic still flows; the counters show it (RARPs from announce_self may add to rx).
      const f = tagged(a, b, 9);
      await a.send(f);
      await expect(b, f, 'after the announce');
      assert.equal(a.stats()[0]?.txFrames, 1);
      assert.ok((b.stats()[0]?.rxFrames ?? 0) >= 1);
      assert.ok((b.stats()[0]?.rxBytes ?? 0) >= f.length);
      const err = await rejectsWithCode(a.deviceStats(), 'EOPNOTSUPP', 'deviceStats on VFIO');
      assert.match(err.message, /vfio/);
    } finally {
      await a.close();
      await b.close();
    }
  });
}

// virtio-net conformance: runs against every target in test/helpers/devices.ts. Frames sent on the
// target come out at its "peer": the same device for the mock (a loopback), another device for a
// real wire (VDPA_TEST_NET_PEER). Our frames carry a local experimental EtherType and a tag, so a
// real peer's unrelated traffic (ARP, IPv6 ND) is told apart; on the mock nothing else may arrive.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { renameSync, writeFileSync } from 'node:fs';
import { after, before, beforeEach, describe, test as nodeTest, type TestContext } from 'node:test';
import { Feature, NetFeature, featureNames, openNet, type NetDevice } from '../../lib';
import { netTargets, type NetTarget } from '../helpers/devices';
import { buildFrame, expectedSegments, type FrameSpec } from '../helpers/gso';
import { Rng, TEST_TIMEOUT, assertBytes, failsWith, rejectsWithCode } from '../helpers/util';

const ETHERTYPE = 0x88b5; // IEEE 802 local experimental
const ETH_HEADER = 14;
const TAG = 0x76647061; // 'vdpa'
const STRANGER = Uint8Array.of(0x02, 0x00, 0x00, 0x00, 0x00, 0x99);
const GROUP = Uint8Array.of(0x01, 0x00, 0x5e, 0x00, 0x00, 0x01);
const BROADCAST = new Uint8Array(6).fill(0xff);

function suite(target: NetTarget): void {
  describe(target.name, () => {
    let net: NetDevice;
    let peer: NetDevice;
    let rng: Rng;
    let seq = 0;
    let strangers = 0;

    // A test that fails or hangs may leave the devices wedged: the next test then starts on freshly
    // opened ones instead of failing in a cascade.
    let healthy = false;
    const test = (name: string, opts: { timeout: number }, fn: (t: TestContext) => unknown): void => {
      nodeTest(name, opts, async (t) => {
        healthy = false;
        await fn(t);
        healthy = true;
      });
    };
    async function open(): Promise<void> {
      net = await openNet(target.spec, target.options);
      peer = target.peer ? await openNet(target.peer.spec, target.peer.options) : net;
    }

    before(async () => {
      await open();
      rng = new Rng();
      healthy = true;
    });
    beforeEach(async () => {
      if (healthy || !net) return;
      await net.close();
      if (peer !== net) await peer.close();
      await open();
    });
    after(async () => {
      await net?.close();
      if (peer !== net) await peer?.close();
    });

    /** A frame of `size` bytes from `net` to `peer` with sequence number `n` and random payload. */
    function frame(size: number, n: number): Uint8Array {
      const f = rng.bytes(size);
      f.set(peer.mac, 0);
      f.set(net.mac, 6);
      const v = new DataView(f.buffer);
      v.setUint16(12, ETHERTYPE);
      v.setUint32(14, TAG);
      v.setUint32(18, n);
      return f;
    }

    /** Our next frame at the peer; unrelated traffic is counted and skipped. */
    async function receiveOurs(): Promise<{ frame: Uint8Array; n: number }> {
      for (;;) {
        const f = await peer.receive();
        assert.ok(f instanceof Uint8Array);
        const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
        // Our frames, and our frames behind an 802.1Q tag.
        const at = f.length >= 16 && v.getUint16(12) === 0x8100 ? 16 : 12;
        if (f.length >= at + 10 && v.getUint16(at) === ETHERTYPE && v.getUint32(at + 2) === TAG)
          return { frame: f, n: v.getUint32(at + 6) };
        strangers++;
        if (net.device.transport === 'mock') assert.fail(`unexpected ${f.length}-byte frame on a mock loopback`);
      }
    }

    /** A 64-byte frame of ours to `dst` (behind a VLAN tag when `vlan` is given). */
    function addressed(dst: Uint8Array, vlan?: number): { f: Uint8Array; n: number } {
      const n = seq++;
      const f = rng.bytes(64);
      const v = new DataView(f.buffer);
      f.set(dst, 0);
      f.set(net.mac, 6);
      let at = 12;
      if (vlan !== undefined) {
        v.setUint16(12, 0x8100);
        v.setUint16(14, vlan);
        at = 16;
      }
      v.setUint16(at, ETHERTYPE);
      v.setUint32(at + 2, TAG);
      v.setUint32(at + 6, n);
      return { f, n };
    }

    /**
     * Which of these frames the peer's receive filter lets through: they are sent in order, then a
     * marker to the peer's own address; a frame that passed arrives before the marker (a wire and
     * the mock keep the order of one sender), so no timing is involved.
     */
    async function passes(...frames: { f: Uint8Array; n: number }[]): Promise<boolean[]> {
      const marker = addressed(peer.mac);
      await net.sendBatch([...frames.map((x) => x.f), marker.f]);
      const arrived = new Set<number>();
      for (let got = await receiveOurs(); got.n !== marker.n; got = await receiveOurs()) arrived.add(got.n);
      return frames.map((x) => arrived.has(x.n));
    }

    /** `p` must reject with EOPNOTSUPP naming `command` (the device did not negotiate it). */
    async function notNegotiated(p: Promise<unknown>, command: string): Promise<void> {
      const err = await rejectsWithCode(p, 'EOPNOTSUPP', command);
      assert.equal(err.syscall, command);
    }

    test('identity: a virtio 1.x network device', { timeout: TEST_TIMEOUT }, (t) => {
      t.diagnostic(`seed ${rng.seed} (set VDPA_TEST_SEED to replay)`);
      const d = net.device;
      assert.equal(d.deviceType, 'net');
      assert.equal(d.deviceId, 1);
      assert.ok(['mock', 'vhost-vdpa', 'vfio'].includes(d.transport), `transport '${d.transport}'`);
      if (target.spec.startsWith('mock:')) assert.equal(d.transport, 'mock');
      assert.equal(d.path, target.spec);
      assert.ok(d.features & Feature.VERSION_1, 'VERSION_1 negotiated');
      assert.equal(d.features & ~d.deviceFeatures, 0n, 'only offered features negotiated');
      assert.ok(d.status() & 4, 'DRIVER_OK is set');
      if (target.options.queueSize !== undefined) assert.equal(net.queueSize, target.options.queueSize);
      assert.ok(Number.isInteger(net.mtu) && net.mtu >= 68 && net.mtu <= 65535, `mtu ${net.mtu}`);
      assert.equal(typeof net.linkUp, 'boolean');
      if (d.transport === 'mock') assert.equal(net.linkUp, true);
      assert.equal(net.droppedFrames, 0);
    });

    test('mac is 6 bytes (from config when MAC is negotiated)', { timeout: TEST_TIMEOUT }, () => {
      assert.ok(net.mac instanceof Uint8Array);
      assert.equal(net.mac.length, 6);
      if (net.device.features & NetFeature.MAC) {
        assertBytes(net.mac, net.device.readConfig(0, 6), 'mac matches config space');
        assert.ok(
          net.mac.some((b) => b !== 0),
          'a configured mac is not all zeroes',
        );
      }
      // A copy: changing it does not change the device's.
      const again = net.mac.slice();
      net.mac.slice().fill(0xff);
      assertBytes(net.mac, again, 'mac stays');
    });

    test('frames from 60 bytes to mtu+14 come back byte-exact', { timeout: TEST_TIMEOUT }, async () => {
      const max = net.mtu + ETH_HEADER;
      const sizes = [60, 61, 64, 100, 127, 128, 255, 256, 511, 512, 1000, 1024, max - 1, max].filter(
        (s, i, all) => s <= max && all.indexOf(s) === i,
      );
      for (const size of sizes) {
        const n = seq++;
        const f = frame(size, n);
        const copy = f.slice();
        await net.send(f);
        assertBytes(f, copy, 'send leaves the frame alone');
        const got = await receiveOurs();
        assert.equal(got.n, n, `frame ${n} of ${size} bytes arrives next`);
        assertBytes(got.frame, copy, `${size}-byte frame`);
      }
    });

    test('2 x queueSize frames in flight with sendBatch all arrive', { timeout: TEST_TIMEOUT }, async () => {
      const count = 2 * Math.max(net.queueSize, peer.queueSize);
      const max = net.mtu + ETH_HEADER;
      const sent = new Map<number, Uint8Array>();
      const batches: Uint8Array[][] = [[], [], []];
      for (let i = 0; i < count; i++) {
        const n = seq++;
        const f = frame(60 + rng.below(max - 60 + 1), n);
        sent.set(n, f.slice());
        (batches[i % 3] as Uint8Array[]).push(f);
      }
      const receiving = (async () => {
        const seen = new Set<number>();
        while (seen.size < count) {
          const got = await receiveOurs();
          const want = sent.get(got.n);
          assert.ok(want, `frame ${got.n} was not sent in this test`);
          assert.ok(!seen.has(got.n), `frame ${got.n} arrived twice`);
          assertBytes(got.frame, want, `frame ${got.n}`);
          seen.add(got.n);
        }
      })();
      receiving.catch(() => undefined); // still awaited below; no unhandled rejection if the test times out
      await Promise.all(batches.map((b) => net.sendBatch(b)));
      await receiving;
      assert.equal(peer.droppedFrames, 0);
      assert.equal(await net.sendBatch([]), undefined, 'an empty batch resolves');
    });

    test('wrong frame sizes and types are refused before anything is sent', { timeout: TEST_TIMEOUT }, async () => {
      const max = net.mtu + ETH_HEADER;
      for (const size of [0, 1, 13, max + 1, max + 100, 65536]) {
        await failsWith(() => net.send(new Uint8Array(size)), RangeError, `send of ${size} bytes`);
      }
      // A batch with one bad frame sends none of them: the next frame to arrive is the one after.
      const skipped = frame(60, seq++);
      await failsWith(
        () => net.sendBatch([skipped, new Uint8Array(max + 1)]),
        RangeError,
        'sendBatch with a bad frame',
      );
      await failsWith(() => net.sendBatch([skipped, new Uint8Array(10)]), RangeError, 'sendBatch with a short frame');
      await failsWith(() => net.send('frame' as unknown as Uint8Array), TypeError, 'send of a string');
      await failsWith(
        () => net.sendBatch([skipped, [1, 2, 3] as unknown as Uint8Array]),
        TypeError,
        'sendBatch with an array',
      );
      await failsWith(
        () => net.sendBatch(skipped as unknown as Uint8Array[]),
        TypeError,
        'sendBatch of a frame, not an array',
      );
      const n = seq++;
      const good = frame(64, n);
      await net.send(good);
      const got = await receiveOurs();
      assert.equal(got.n, n, 'no frame of a refused batch was sent');
    });

    test(
      'receive buffers: mergeable when offered and asked for; frames across buffer edges come back',
      { timeout: TEST_TIMEOUT },
      async (t) => {
        const offered = (peer.device.deviceFeatures & NetFeature.MRG_RXBUF) !== 0n;
        assert.equal(peer.mergeable, offered && target.options.mergeable !== false, 'MRG_RXBUF negotiated');
        assert.equal(peer.mergeable, (peer.device.features & NetFeature.MRG_RXBUF) !== 0n);
        t.diagnostic(`peer: mergeable ${peer.mergeable}, ${peer.rxBufferSize}-byte receive buffers, mtu ${peer.mtu}`);
        const max = Math.min(net.mtu, peer.mtu) + ETH_HEADER;
        const b = peer.rxBufferSize;
        const sizes = [1, 2, 3, 5]
          .flatMap((k) => [k * b - 13, k * b - 12, k * b - 11])
          .concat([60, max])
          .filter((size, i, all) => size >= 60 && size <= max && all.indexOf(size) === i);
        for (const size of sizes) {
          const n = seq++;
          const f = frame(size, n);
          const copy = f.slice();
          await net.send(f);
          const got = await receiveOurs();
          assert.equal(got.n, n, `frame ${n} of ${size} bytes arrives next`);
          assertBytes(got.frame, copy, `${size}-byte frame`);
        }
      },
    );

    test('control queue: negotiated when offered and asked for', { timeout: TEST_TIMEOUT }, (t) => {
      for (const d of [net, peer]) {
        const offered = (d.device.deviceFeatures & NetFeature.CTRL_VQ) !== 0n;
        assert.equal(d.hasControl, offered && target.options.control !== false);
      }
      t.diagnostic(`negotiated: ${featureNames(peer.device.features, 1).join(' ')}`);
    });

    test(
      'receive filter: promiscuous, all-multicast and the MAC table decide what arrives',
      { timeout: TEST_TIMEOUT },
      async () => {
        if (!(peer.device.features & NetFeature.CTRL_RX)) {
          await notNegotiated(peer.setPromiscuous(false), 'VIRTIO_NET_CTRL_RX_PROMISC');
          await notNegotiated(peer.setMacTable({}), 'VIRTIO_NET_CTRL_MAC_TABLE_SET');
          return;
        }
        try {
          await peer.setPromiscuous(true);
          assert.deepEqual(await passes(addressed(STRANGER), addressed(GROUP)), [true, true], 'promiscuous');
          await peer.setPromiscuous(false);
          assert.deepEqual(
            await passes(addressed(STRANGER), addressed(GROUP), addressed(BROADCAST)),
            [false, false, true],
            'not promiscuous: only own and broadcast',
          );
          await peer.setAllMulticast(true);
          assert.deepEqual(await passes(addressed(STRANGER), addressed(GROUP)), [false, true], 'all-multicast');
          await peer.setAllMulticast(false);
          await peer.setMacTable({ unicast: [STRANGER], multicast: [GROUP] });
          assert.deepEqual(await passes(addressed(STRANGER), addressed(GROUP)), [true, true], 'MAC table');
          await peer.setMacTable({});
          assert.deepEqual(await passes(addressed(STRANGER), addressed(GROUP)), [false, false], 'empty MAC table');
        } finally {
          await peer.setPromiscuous(true);
        }
      },
    );

    test('setMac: config space, mac and the receive filter follow', { timeout: TEST_TIMEOUT }, async () => {
      if (!(peer.device.features & NetFeature.CTRL_MAC_ADDR)) {
        await notNegotiated(peer.setMac(STRANGER), 'VIRTIO_NET_CTRL_MAC_ADDR_SET');
        return;
      }
      const own = peer.mac;
      try {
        await peer.setMac(STRANGER);
        assertBytes(peer.mac, STRANGER, 'mac');
        if (peer.device.features & NetFeature.MAC) assertBytes(peer.device.readConfig(0, 6), STRANGER, 'config mac');
        if (peer.device.features & NetFeature.CTRL_RX) {
          await peer.setPromiscuous(false);
          assert.deepEqual(await passes(addressed(own)), [false], 'the old address no longer passes');
        }
      } finally {
        await peer.setMac(own);
        if (peer.device.features & NetFeature.CTRL_RX) await peer.setPromiscuous(true);
      }
      assertBytes(peer.mac, own, 'mac restored');
    });

    test(
      'VLAN filter: tagged frames pass once their VLAN is added, until it is removed',
      { timeout: TEST_TIMEOUT },
      async () => {
        if (!(peer.device.features & NetFeature.CTRL_VLAN)) {
          await notNegotiated(peer.addVlan(5), 'VIRTIO_NET_CTRL_VLAN_ADD');
          return;
        }
        assert.ok(peer.device.features & NetFeature.CTRL_RX, 'VLAN filtering comes with the RX filter');
        try {
          await peer.setPromiscuous(false);
          assert.deepEqual(await passes(addressed(peer.mac, 5), addressed(peer.mac, 6)), [false, false]);
          await peer.addVlan(5);
          assert.deepEqual(await passes(addressed(peer.mac, 5), addressed(peer.mac, 6)), [true, false]);
          await peer.removeVlan(5);
          assert.deepEqual(await passes(addressed(peer.mac, 5)), [false]);
        } finally {
          await peer.setPromiscuous(true);
        }
      },
    );

    test(
      'announce: an acknowledgement with none pending is refused with EIO naming it',
      { timeout: TEST_TIMEOUT },
      async () => {
        if (!(peer.device.features & NetFeature.GUEST_ANNOUNCE)) {
          await notNegotiated(peer.acknowledgeAnnounce(), 'VIRTIO_NET_CTRL_ANNOUNCE_ACK');
          return;
        }
        const status = peer.device.readConfig(6, 1)[0] as number;
        if (status & 2) await peer.acknowledgeAnnounce(); // one pending since open: acknowledged now
        const err = await rejectsWithCode(peer.acknowledgeAnnounce(), 'EIO', 'ack with none pending');
        assert.equal(err.syscall, 'VIRTIO_NET_CTRL_ANNOUNCE_ACK');
        assert.match(err.message, /VIRTIO_NET_ERR/);
        // The refusal changed nothing: traffic goes on.
        assert.deepEqual(await passes(addressed(peer.mac)), [true]);
      },
    );

    test(
      'checksum offload: negotiated only when asked for; the checksum arrives filled in or marked partial',
      { timeout: TEST_TIMEOUT },
      async (t) => {
        const asked = target.options.txChecksum === true;
        const offered = (net.device.deviceFeatures & NetFeature.CSUM) !== 0n;
        assert.equal((net.device.features & NetFeature.CSUM) !== 0n, asked && offered, 'CSUM negotiated');
        assert.equal(
          (peer.device.features & NetFeature.GUEST_CSUM) !== 0n,
          target.options.rxChecksum === true && (peer.device.deviceFeatures & NetFeature.GUEST_CSUM) !== 0n,
          'GUEST_CSUM negotiated',
        );
        const start = 34;
        const offset = 6;
        const n = seq++;
        const f = frame(300, n);
        if (!(net.device.features & NetFeature.CSUM)) {
          t.diagnostic(`CSUM ${offered ? 'offered, not asked for' : 'not offered'}`);
          await rejectsWithCode(net.send(f, { checksum: { start, offset } }), 'EOPNOTSUPP', 'send with a checksum');
          return;
        }
        const copy = f.slice();
        await net.send(f, { checksum: { start, offset } });
        let got: { frame: Uint8Array; checksumNeeded: boolean } | undefined;
        while (!got) {
          const p = await peer.receivePacket();
          const v = new DataView(p.frame.buffer, p.frame.byteOffset);
          if (p.frame.length >= 22 && v.getUint16(12) === ETHERTYPE && v.getUint32(18) === n)
            got = { frame: p.frame, checksumNeeded: p.meta.checksumNeeded };
        }
        if (got.checksumNeeded) {
          assertBytes(got.frame, copy, 'a partial checksum arrives as sent');
          return;
        }
        let sum = 0;
        for (let i = start; i < copy.length; i += 2) {
          const hi = i === start + offset ? 0 : (copy[i] as number);
          const lo = i + 1 === start + offset + 1 || i + 1 >= copy.length ? 0 : (copy[i + 1] as number);
          sum += (hi << 8) | lo;
        }
        while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
        const c = ~sum & 0xffff;
        copy[start + offset] = c >> 8;
        copy[start + offset + 1] = c & 0xff;
        assertBytes(got.frame, copy, 'the device filled in the checksum');
      },
    );

    test(
      'segmentation offload: negotiated only when asked for; a large TCP frame arrives whole or as its segments',
      { timeout: TEST_TIMEOUT },
      async (t) => {
        const asked = target.options.txGso === true;
        const offered = (net.device.deviceFeatures & NetFeature.HOST_TSO6) !== 0n;
        assert.equal((net.device.features & NetFeature.HOST_TSO6) !== 0n, asked && offered, 'HOST_TSO6 negotiated');
        const rxAsked = target.options.rxGso === true;
        const whole = (peer.device.features & NetFeature.GUEST_TSO6) !== 0n;
        assert.equal(whole, rxAsked && (peer.device.deviceFeatures & NetFeature.GUEST_TSO6) !== 0n, 'GUEST_TSO6');
        // TCP over IPv6 (link-local addresses), from net's MAC to peer's; sizes fit the peer's MTU.
        const size = Math.min(1440, peer.mtu - 60);
        const spec: FrameSpec = { ipv6: true, payload: rng.bytes(size * 7 + 100), seq: rng.next(), flags: 0x18 };
        const stamp = (f: Uint8Array): Uint8Array => {
          f.set(peer.mac, 0);
          f.set(net.mac, 6);
          return f;
        };
        const built = buildFrame({ ...spec, partial: true });
        const f = stamp(built.frame);
        const options = { checksum: { start: built.l4, offset: 16 }, gso: { type: 'tcpv6' as const, size } };
        if (!(net.device.features & NetFeature.HOST_TSO6)) {
          t.diagnostic(`HOST_TSO6 ${offered ? 'offered, not asked for' : 'not offered'}`);
          await rejectsWithCode(net.send(f, options), 'EOPNOTSUPP', 'send with gso');
          return;
        }
        const want = whole ? [f.slice()] : expectedSegments(spec, size).map(stamp);
        await net.send(f, options);
        const got: { frame: Uint8Array; gsoType: string; gsoSize: number }[] = [];
        while (got.length < want.length) {
          const p = await peer.receivePacket();
          const v = new DataView(p.frame.buffer, p.frame.byteOffset);
          // Ours: IPv6 from net's MAC (anything else on a real wire is skipped).
          if (
            p.frame.length < 14 ||
            v.getUint16(12) !== 0x86dd ||
            !Buffer.from(p.frame.subarray(6, 12)).equals(net.mac)
          )
            continue;
          got.push({ frame: p.frame, gsoType: p.meta.gsoType, gsoSize: p.meta.gsoSize });
        }
        t.diagnostic(`${whole ? 'whole' : `${want.length} segments`} at the peer`);
        for (let i = 0; i < want.length; i++) {
          assertBytes(got[i]?.frame as Uint8Array, want[i] as Uint8Array, `frame ${i} of ${want.length}`);
          assert.deepEqual(
            [got[i]?.gsoType, got[i]?.gsoSize],
            whole ? ['tcpv6', size] : ['none', 0],
            'the segmentation header',
          );
        }
      },
    );

    // The link is changed by the mock's command frames, or on a real wire by the harness
    // (scripts/vm/run.sh --net-link-control: NIC i, MAC 52:54:00:12:34:5i, is on hub port hpi).
    const linkRequests = process.env.VDPA_TEST_NET_LINK_REQUEST;
    const mockLink = target.options.mock?.commandFrames === true;
    if (mockLink || linkRequests)
      test(
        "link: the config interrupt becomes a 'link' event and linkUp follows",
        { timeout: TEST_TIMEOUT },
        async () => {
          assert.ok(peer.device.features & NetFeature.STATUS, 'VIRTIO_NET_F_STATUS negotiated');
          const port = `hp${((peer.device.readConfig(0, 6)[5] as number) - 0x50).toString()}`;
          const setLink = async (up: boolean): Promise<void> => {
            if (mockLink) {
              const f = new Uint8Array(60);
              f.set(peer.mac, 0);
              f.set(peer.mac, 6);
              new DataView(f.buffer).setUint16(12, 0x88b6); // mock:net command frame
              f[14] = up ? 1 : 0;
              await peer.send(f);
            } else {
              writeFileSync(`${linkRequests as string}.tmp`, `${port} ${up ? 'on' : 'off'}`);
              renameSync(`${linkRequests as string}.tmp`, linkRequests as string);
            }
          };
          assert.equal(peer.linkUp, true);
          // An event listener keeps no process alive (as in Node); the harness answers in its own time.
          const alive = setInterval(() => undefined, 1000);
          try {
            const down = once(peer, 'link');
            await setLink(false);
            assert.deepEqual(await down, [false]);
            assert.equal(peer.linkUp, false);
          } finally {
            const up = once(peer, 'link');
            await setLink(true);
            try {
              assert.deepEqual(await up, [true]);
            } finally {
              clearInterval(alive);
            }
          }
          assert.equal(peer.linkUp, true);
          assert.deepEqual(await passes(addressed(peer.mac)), [true], 'traffic flows again');
        },
      );

    test('frames() yields received frames and ends after close', { timeout: TEST_TIMEOUT }, async (t) => {
      const count = 8;
      const sent = new Map<number, Uint8Array>();
      const frames: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const n = seq++;
        const f = frame(60 + 100 * i, n);
        sent.set(n, f.slice());
        frames.push(f);
      }
      let seen = 0;
      let reachedAll: () => void = () => undefined;
      const all = new Promise<void>((resolve) => (reachedAll = resolve));
      const loop = (async () => {
        let after = 0;
        for await (const f of peer.frames()) {
          const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
          if (f.length < 22 || v.getUint16(12) !== ETHERTYPE) continue;
          const want = sent.get(v.getUint32(18));
          if (!want) continue;
          assertBytes(f, want, 'frame from the iterator');
          if (++seen === count) reachedAll();
          else if (seen > count) after++;
        }
        return after;
      })();
      await net.sendBatch(frames);
      await all;
      if (peer !== net) await net.close();
      await peer.close();
      assert.equal(await loop, 0, 'the loop ends without error after close');
      assert.equal(seen, count);
      await rejectsWithCode(peer.receive(), 'EBADF', 'receive after close');
      await rejectsWithCode(net.send(frame(60, seq++)), 'EBADF', 'send after close');
      await rejectsWithCode(net.sendBatch([frame(60, seq++)]), 'EBADF', 'sendBatch after close');
      // A new iterator on a closed device ends at once.
      let more = 0;
      for await (const f of peer.frames()) more += f.length;
      assert.equal(more, 0);
      t.diagnostic(`unrelated frames skipped: ${strangers}`);
    });
  });
}

describe('virtio-net conformance', () => {
  for (const target of netTargets()) suite(target);
});

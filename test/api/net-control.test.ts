// mock:net's control queue, link events and queue pairs: the receive filter (promiscuous, all
// multicast, MAC table, MAC address, VLAN filter) decides which looped-back frames arrive, a refused
// command rejects with EIO naming it, a command the device did not negotiate with EOPNOTSUPP, and
// control commands honour AbortSignal and requestTimeout as every request does. Absence is checked
// without timing: the mock loops frames back in order, so a filtered frame would arrive before the
// marker frame sent after it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { NetFeature, openNet, type NetDevice } from '../../lib';
import { TEST_TIMEOUT, assertBytes, failsWith, rejectsWithCode } from '../helpers/util';
import { withMockNet } from '../helpers/devices';

const OWN = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const OTHER = Uint8Array.of(0x02, 0x00, 0x00, 0x00, 0x00, 0x99);
const GROUP = Uint8Array.of(0x01, 0x00, 0x5e, 0x00, 0x00, 0x01);
const BROADCAST = new Uint8Array(6).fill(0xff);
const COMMAND_ETHERTYPE = 0x88b6;

let seq = 0;
/** A 64-byte frame to `dst` carrying a sequence number; `vlan` puts an 802.1Q tag in front. */
function frame(dst: Uint8Array, vlan?: number): { f: Uint8Array; n: number } {
  const n = seq++;
  const f = new Uint8Array(64);
  const v = new DataView(f.buffer);
  f.set(dst, 0);
  f.set(OWN, 6);
  let at = 12;
  if (vlan !== undefined) {
    v.setUint16(12, 0x8100);
    v.setUint16(14, vlan);
    at = 16;
  }
  v.setUint16(at, 0x88b5);
  v.setUint32(at + 2, n);
  return { f, n };
}
const seqOf = (f: Uint8Array): number => {
  const v = new DataView(f.buffer, f.byteOffset);
  return v.getUint32(v.getUint16(12) === 0x8100 ? 18 : 14);
};

/** Sends frames to each destination, then a marker to the device's own address: which arrived? */
async function passes(net: NetDevice, ...frames: { f: Uint8Array; n: number }[]): Promise<boolean[]> {
  const marker = frame(net.mac);
  await net.sendBatch([...frames.map((x) => x.f), marker.f]);
  const arrived = new Set<number>();
  for (;;) {
    const n = seqOf(await net.receive());
    if (n === marker.n) break;
    arrived.add(n);
  }
  return frames.map((x) => arrived.has(x.n));
}

function command(net: NetDevice, what: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set(net.mac, 0);
  f.set(net.mac, 6);
  new DataView(f.buffer).setUint16(12, COMMAND_ETHERTYPE);
  f[14] = what;
  return f;
}

describe('virtio-net control queue (mock:net)', () => {
  test('negotiated by default: CTRL_VQ with RX, VLAN, MAC_ADDR and GUEST_ANNOUNCE', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({}, async (net) => {
      const want = NetFeature.CTRL_VQ | NetFeature.CTRL_RX | NetFeature.CTRL_VLAN | NetFeature.CTRL_MAC_ADDR;
      assert.equal(net.device.features & want, want);
      assert.ok(net.device.features & NetFeature.GUEST_ANNOUNCE);
      assert.equal(net.hasControl, true);
    }),
  );

  test('promiscuous off: own address and broadcast pass, others do not', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({}, async (net) => {
      // After reset the device is promiscuous (as QEMU's).
      assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP)), [true, true]);
      await net.setPromiscuous(false);
      assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP), frame(BROADCAST), frame(OWN)), [
        false,
        false,
        true,
        true,
      ]);
      await net.setAllMulticast(true);
      assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP)), [false, true]);
      await net.setAllMulticast(false);
      await net.setPromiscuous(true);
      assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP)), [true, true]);
    }),
  );

  test(
    'the MAC table admits its unicast and multicast addresses, and is replaced as a whole',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({}, async (net) => {
        await net.setPromiscuous(false);
        await net.setMacTable({ unicast: ['02:00:00:00:00:99'], multicast: [GROUP] });
        assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP)), [true, true]);
        await net.setMacTable({ multicast: [GROUP] });
        assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP)), [false, true]);
        await net.setMacTable({});
        assert.deepEqual(await passes(net, frame(OTHER), frame(GROUP)), [false, false]);
      }),
  );

  test('setMac: config space, mac and the filter follow', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({}, async (net) => {
      await net.setPromiscuous(false);
      await net.setMac(OTHER);
      assertBytes(net.mac, OTHER, 'mac');
      assert.equal(net.macAddress, '02:00:00:00:00:99');
      assertBytes(net.device.readConfig(0, 6), OTHER, 'config space mac');
      assert.deepEqual(await passes(net, frame(OTHER), frame(OWN)), [true, false]);
      await net.setMac('52:54:00:12:34:56');
      assertBytes(net.mac, OWN, 'mac restored');
    }),
  );

  test('VLAN filter: tagged frames pass once their VLAN is added, until it is removed', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({}, async (net) => {
      await net.setPromiscuous(false);
      assert.deepEqual(await passes(net, frame(OWN, 5), frame(OWN, 6)), [false, false]);
      await net.addVlan(5);
      assert.deepEqual(await passes(net, frame(OWN, 5), frame(OWN, 6)), [true, false]);
      await net.removeVlan(5);
      assert.deepEqual(await passes(net, frame(OWN, 5)), [false]);
    }),
  );

  test('bad arguments are TypeError/RangeError before anything is sent', { timeout: TEST_TIMEOUT }, () =>
    withMockNet({}, async (net) => {
      await failsWith(() => net.setPromiscuous(1 as unknown as boolean), TypeError, 'promisc 1');
      await failsWith(() => net.setMac('52:54:00:12:34'), RangeError, 'short mac text');
      await failsWith(() => net.setMac(new Uint8Array(5)), RangeError, '5-byte mac');
      await failsWith(() => net.setMac(42 as unknown as string), TypeError, 'mac number');
      await failsWith(() => net.setMacTable({ unicast: [GROUP] }), RangeError, 'multicast in unicast');
      await failsWith(() => net.setMacTable({ multicast: [OTHER] }), RangeError, 'unicast in multicast');
      await failsWith(() => net.setMacTable({ unicast: new Array(129).fill(OTHER) }), RangeError, '129 addresses');
      await failsWith(() => net.setMacTable(null as unknown as object), TypeError, 'null table');
      await failsWith(() => net.addVlan(4096), RangeError, 'vid 4096');
      await failsWith(() => net.removeVlan(-1), RangeError, 'vid -1');
      await failsWith(() => net.send(frame(OWN).f, { queue: 1 }), RangeError, 'queue 1 of 1');
    }),
  );

  for (const [refuseControl, call, name] of [
    ['rx', (n: NetDevice) => n.setPromiscuous(false), 'VIRTIO_NET_CTRL_RX_PROMISC'],
    ['rx', (n: NetDevice) => n.setAllMulticast(true), 'VIRTIO_NET_CTRL_RX_ALLMULTI'],
    ['mac', (n: NetDevice) => n.setMacTable({}), 'VIRTIO_NET_CTRL_MAC_TABLE_SET'],
    ['mac', (n: NetDevice) => n.setMac(OTHER), 'VIRTIO_NET_CTRL_MAC_ADDR_SET'],
    ['vlan', (n: NetDevice) => n.addVlan(1), 'VIRTIO_NET_CTRL_VLAN_ADD'],
    ['all', (n: NetDevice) => n.removeVlan(1), 'VIRTIO_NET_CTRL_VLAN_DEL'],
  ] as const) {
    test(`a refused ${name} rejects with EIO naming it`, { timeout: TEST_TIMEOUT }, () =>
      withMockNet({ mock: { refuseControl } }, async (net) => {
        const err = await rejectsWithCode(call(net), 'EIO', name);
        assert.equal(err.syscall, name);
        assert.match(err.message, new RegExp(`refused ${name} \\(VIRTIO_NET_ERR\\)`));
        if (name === 'VIRTIO_NET_CTRL_MAC_ADDR_SET') assertBytes(net.mac, OWN, 'mac unchanged');
        // The device is fine: other commands and traffic go on.
        if (refuseControl !== 'all') await net.acknowledgeAnnounce().catch(() => undefined);
        assert.deepEqual(await passes(net, frame(OWN)), [true]);
      }),
    );
  }

  test(
    'without the control queue (control: false) each command rejects with EOPNOTSUPP',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ control: false }, async (net) => {
        assert.equal(net.device.features & NetFeature.CTRL_VQ, 0n);
        assert.equal(net.hasControl, false);
        const err = await rejectsWithCode(net.setPromiscuous(true), 'EOPNOTSUPP', 'promisc');
        assert.equal(err.syscall, 'VIRTIO_NET_CTRL_RX_PROMISC');
        assert.match(err.message, /VIRTIO_NET_F_CTRL_VQ/);
        await rejectsWithCode(net.setMac(OTHER), 'EOPNOTSUPP', 'setMac');
        await rejectsWithCode(net.acknowledgeAnnounce(), 'EOPNOTSUPP', 'announce');
        await rejectsWithCode(net.addVlan(3), 'EOPNOTSUPP', 'vlan');
        await failsWith(
          () => openNet('mock:net', { control: false, queuePairs: 2 }),
          TypeError,
          'pairs without control',
        );
      }),
  );

  test('control commands honour AbortSignal and requestTimeout', { timeout: TEST_TIMEOUT }, async () => {
    await withMockNet({}, async (net) => {
      const ac = new AbortController();
      ac.abort(new Error('no'));
      await assert.rejects(net.setPromiscuous(false, { signal: ac.signal }), { name: 'AbortError' });
      // Never sent: the device is still promiscuous.
      assert.deepEqual(await passes(net, frame(OTHER)), [true]);
    });
    // A device that answers nothing: the command times out and fails the device, like any request.
    await withMockNet({ requestTimeout: 100, mock: { fault: 'stall' } }, async (net) => {
      const timedOut = once(net, 'timeout');
      await rejectsWithCode(net.setPromiscuous(false), 'ETIMEDOUT', 'stalled command');
      await timedOut;
    });
  });
});

describe('link state and announce (mock:net)', () => {
  test("the config interrupt becomes a 'link' event; linkUp stays current", { timeout: TEST_TIMEOUT }, () =>
    withMockNet({ mock: { commandFrames: true } }, async (net) => {
      assert.equal(net.linkUp, true);
      const down = once(net, 'link');
      await net.send(command(net, 0));
      assert.deepEqual(await down, [false]);
      assert.equal(net.linkUp, false);
      // No carrier: a frame sent now is not looped back; the marker after the link returns is.
      const lost = frame(OWN);
      await net.send(lost.f);
      const up = once(net, 'link');
      await net.send(command(net, 1));
      assert.deepEqual(await up, [true]);
      assert.equal(net.linkUp, true);
      assert.deepEqual(await passes(net, frame(OWN)), [true]);
    }),
  );

  test(
    "an announce request is an 'announce' event; acknowledging it clears it, a second ack is refused",
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ mock: { commandFrames: true } }, async (net) => {
        const announced = once(net, 'announce');
        await net.send(command(net, 2));
        await announced;
        assert.equal(net.device.readConfig(6, 1)[0] & 2, 2, 'VIRTIO_NET_S_ANNOUNCE set');
        await net.acknowledgeAnnounce();
        assert.equal(net.device.readConfig(6, 1)[0] & 2, 0, 'VIRTIO_NET_S_ANNOUNCE cleared');
        const err = await rejectsWithCode(net.acknowledgeAnnounce(), 'EIO', 'ack with nothing pending');
        assert.equal(err.syscall, 'VIRTIO_NET_CTRL_ANNOUNCE_ACK');
        assert.equal(net.linkUp, true);
      }),
  );
});

describe('queue pairs (mock:net)', () => {
  test(
    'queuePairs 4: frames spread over the pairs, or go where { queue } says; all arrive',
    { timeout: TEST_TIMEOUT },
    () =>
      withMockNet({ queuePairs: 4, queueSize: 16, mock: { queuePairs: 4 } }, async (net) => {
        assert.ok(net.device.features & NetFeature.MQ);
        assert.equal(net.queuePairs, 4);
        const sent = new Map<number, Uint8Array>();
        const frames: Uint8Array[] = [];
        for (let i = 0; i < 64; i++) {
          const { f, n } = frame(OWN);
          sent.set(n, f.slice());
          frames.push(f);
        }
        const receiving = (async () => {
          for (let i = 0; i < frames.length + 4; i++) {
            const f = await net.receive();
            const want = sent.get(seqOf(f));
            assert.ok(want, 'a frame that was sent');
            assertBytes(f, want, 'frame');
            sent.delete(seqOf(f));
          }
        })();
        receiving.catch(() => undefined);
        await net.sendBatch(frames);
        for (let q = 0; q < 4; q++) {
          const { f, n } = frame(OWN);
          sent.set(n, f.slice());
          await net.send(f, { queue: q });
        }
        await receiving;
        assert.equal(sent.size, 0);
        // Spread: 16 of the batch on each pair plus one each with { queue }, looped back on the same pair.
        assert.deepEqual(
          net.stats().map((s) => [s.txFrames, s.rxFrames, s.rxBytes]),
          [0, 1, 2, 3].map(() => [17, 17, 17 * 64]),
        );
      }),
  );

  test(
    'more queue pairs than the device offers is EOPNOTSUPP; queuePairs is checked',
    { timeout: TEST_TIMEOUT },
    async () => {
      await rejectsWithCode(openNet('mock:net', { queuePairs: 2 }), 'EOPNOTSUPP', '2 pairs of 1');
      await rejectsWithCode(openNet('mock:net', { queuePairs: 5, mock: { queuePairs: 4 } }), 'EOPNOTSUPP', '5 of 4');
      await failsWith(() => openNet('mock:net', { queuePairs: 0 }), RangeError, '0 pairs');
      // The device refusing VQ_PAIRS_SET fails the open.
      const err = await rejectsWithCode(
        openNet('mock:net', { queuePairs: 2, mock: { queuePairs: 2, refuseControl: 'mq' } }),
        'EIO',
        'refused pairs',
      );
      assert.equal(err.syscall, 'VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET');
    },
  );
});

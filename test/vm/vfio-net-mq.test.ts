// virtio-net multiqueue over VFIO on a device with more than one queue pair (issue 11): the two NICs of
// run.sh --net-mq-pair QUEUES (MACs 52:54:00:12:34:60 and :61), QEMU virtio-net-pci on vhost-user,
// served on the host by DPDK's testpmd with io forwarding between its two vhost ports, queue q of one
// to queue q of the other. A hub port (--net-pair) is one queue; this backend has QUEUES pairs, so:
//   - MQ is negotiated, max_virtqueue_pairs is QUEUES, openNet({ queuePairs: QUEUES }) opens every pair
//     (VQ_PAIRS_SET acknowledged by QEMU, which enables the pairs on the backend) and one more is refused;
//   - frames sent with { queue: q } arrive intact, in order, on the other NIC's pair q and only there
//     (the per-pair stats() count them), both ways; without { queue } send takes the pairs in turn;
//   - the NICs have no MSI-X (run.sh: QEMU 7.2 under TCG crashes starting vhost-user with it), so the
//     library takes their INTx line (one thread per NIC fans it out to the queues);
//   - RSS and HASH_REPORT are not offered: QEMU 7.2 clears RSS for a vhost peer unless its eBPF
//     steering is loaded, which only a tap can take, so setRss is EOPNOTSUPP.
// The NICs are found by MAC and bound to vfio-pci here (no other test touches them).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceType, NetFeature, featureNames, openNet, type NetDevice } from '../../lib';
import { ConfigView, NetConfig } from '../../lib/config';
import { rejectsWithCode } from '../helpers/util';
import { nicsByMac } from './vfio-env';
import { IN_VM, SKIP_REASON, within } from './vm-env';

const MACS = ['52:54:00:12:34:60', '52:54:00:12:34:61'];
const ETHERTYPE = 0x88b5;
/** Frames per pair and direction. */
const BURST = 8;
/** Entries per queue: small, so that warming the IOTLB up (see pathUp) takes few frames. */
const QUEUE_SIZE = 16;
/** Probes that must arrive before a path counts as up. */
const WARM = 2 * QUEUE_SIZE + BURST;

let found: [string, string] | undefined;
function nics(): [string, string] {
  found ??= nicsByMac(MACS) as [string, string];
  return found;
}

function pairsWanted(): number {
  const v = process.env.VDPA_VM_NET_MQ_PAIRS;
  assert.ok(v && /^[2-8]$/.test(v), 'needs run.sh --net-mq-pair QUEUES (VDPA_VM_NET_MQ_PAIRS)');
  return Number(v);
}

/** A frame from `from` to `to`, `size` bytes, carrying (queue, index) and a pattern derived from them. */
function frame(from: NetDevice, to: NetDevice, queue: number, index: number, size: number): Uint8Array {
  const f = new Uint8Array(size);
  f.set(to.mac, 0);
  f.set(from.mac, 6);
  const d = new DataView(f.buffer);
  d.setUint16(12, ETHERTYPE);
  d.setUint16(14, queue);
  d.setUint16(16, index);
  for (let i = 18; i < size; i++) f[i] = (i * 7 + queue * 31 + index * 13) & 0xff;
  return f;
}

function rxCounts(n: NetDevice): number[] {
  return n.stats().map((s) => s.rxFrames);
}
function txCounts(n: NetDevice): number[] {
  return n.stats().map((s) => s.txFrames);
}

/** Sends BURST frames on pair q of `from`, then reads them at `to` in order, byte for byte. */
async function burst(from: NetDevice, to: NetDevice, q: number, what: string): Promise<void> {
  const sent: Uint8Array[] = [];
  for (let i = 0; i < BURST; i++) {
    const f = frame(from, to, q, i, 60 + ((i * 211 + q * 97) % 1455)); // 60 to 1514 bytes
    sent.push(f);
    await from.send(f, { queue: q });
  }
  for (const [i, f] of sent.entries()) {
    const p = await within(to.receivePacket(), 20_000, `${what}: frame ${i} of pair ${q}`);
    assert.equal(p.frame.length, f.length, `${what}: frame ${i} of pair ${q}: length`);
    assert.ok(
      p.frame.every((b, j) => b === f[j]),
      `${what}: frame ${i} of pair ${q} arrived intact and in order`,
    );
  }
}

/**
 * Waits until pair q carries frames from `from` to `to` without loss. testpmd drops what it forwards
 * to a vhost port whose rings it has not taken up yet (a moment after DRIVER_OK, and after
 * VQ_PAIRS_SET for the pairs past 0), and every frame whose receive buffer it cannot translate yet:
 * with VIRTIO_F_ACCESS_PLATFORM DPDK's vhost asks QEMU for the IOTLB entry of a buffer's page
 * the first time it meets it, and drops the frame meanwhile. So probes go until WARM of them arrived,
 * twice round the receive ring (its buffers are reused at the same addresses); each waits 200 ms.
 */
async function pathUp(from: NetDevice, to: NetDevice, q: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  let arrived = 0;
  let sent = 0;
  while (arrived < WARM) {
    assert.ok(Date.now() < deadline, `pair ${q} carried ${arrived} of ${sent} probes in 60 s`);
    await from.send(frame(from, to, 0xfffe, q, 60), { queue: q });
    sent++;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 200);
    try {
      const p = await to.receivePacket({ signal: ac.signal });
      assert.equal(p.frame.length, 60, 'only probes travel while the path warms up');
      arrived++;
    } catch (e) {
      if (!ac.signal.aborted) throw e;
    } finally {
      clearTimeout(timer);
    }
  }
  return sent - arrived;
}

/** Lets late probes arrive and drops them, so the bursts start on empty receive queues. */
async function drain(n: NetDevice): Promise<void> {
  for (;;) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 500);
    try {
      const p = await n.receivePacket({ signal: ac.signal });
      assert.equal(new DataView(p.frame.buffer, p.frame.byteOffset).getUint16(14), 0xfffe, 'a late probe');
    } catch (e) {
      if (!ac.signal.aborted) throw e;
      return;
    } finally {
      clearTimeout(timer);
    }
  }
}

if (!IN_VM) {
  test('vm virtio-net multiqueue over VFIO (vhost-user)', { skip: SKIP_REASON }, () => {});
} else {
  test('multiqueue on vhost-user: every pair carries its own frames both ways; stats per pair', async () => {
    const pairs = pairsWanted();
    const [a, b] = nics();
    const na = await openNet(`vfio:${a}`, { queuePairs: pairs, queueSize: QUEUE_SIZE });
    let nb: NetDevice | undefined;
    try {
      nb = await openNet(`vfio:${b}`, { queuePairs: pairs, queueSize: QUEUE_SIZE });
      const names = (f: bigint): string => featureNames(f, DeviceType.net).join(' ');
      console.log(`# vfio-net-mq: offered ${names(na.device.deviceFeatures)}`);
      console.log(`# vfio-net-mq: negotiated ${names(na.device.features)}`);
      for (const n of [na, nb]) {
        assert.ok(n.device.features & NetFeature.MQ, 'VIRTIO_NET_F_MQ negotiated');
        assert.ok(n.device.features & NetFeature.CTRL_VQ, 'VIRTIO_NET_F_CTRL_VQ negotiated');
        assert.equal(n.queuePairs, pairs);
        const max = new ConfigView(n.device.readConfig(0, 10)).get(NetConfig.maxVirtqueuePairs);
        console.log(`# vfio-net-mq: max_virtqueue_pairs ${max}`);
        assert.equal(max, pairs, 'max_virtqueue_pairs is the vhost-user queue count');
      }
      const lost: number[] = [];
      for (let q = 0; q < pairs; q++) lost.push(await pathUp(na, nb, q), await pathUp(nb, na, q));
      console.log(`# vfio-net-mq: probes lost while warming up (a->b, b->a per pair): ${lost.join(' ')}`);
      await drain(na);
      await drain(nb);
      const tx0 = [txCounts(na), txCounts(nb)];
      for (let q = 0; q < pairs; q++) {
        const before: number[][] = [rxCounts(nb), rxCounts(na)];
        await burst(na, nb, q, 'a -> b');
        await burst(nb, na, q, 'b -> a');
        // Each frame arrived on the other NIC's pair q (testpmd forwards queue q to queue q) and nowhere else.
        const want = (was: number[]): number[] => was.map((c, p) => (p === q ? c + BURST : c));
        assert.deepEqual(rxCounts(nb), want(before[0] as number[]), `b's receive pairs after a sent on ${q}`);
        assert.deepEqual(rxCounts(na), want(before[1] as number[]), `a's receive pairs after b sent on ${q}`);
      }
      const plus = (was: number[], k: number): number[] => was.map((c) => c + k);
      assert.deepEqual(txCounts(na), plus(tx0[0] as number[], BURST));
      assert.deepEqual(txCounts(nb), plus(tx0[1] as number[], BURST));
      // Without { queue }: the pairs in turn, frame by frame; each comes out of the other NIC's same pair.
      const rx0 = rxCounts(nb);
      const tx1 = txCounts(na);
      const sent: Uint8Array[] = [];
      for (let i = 0; i < 2 * pairs; i++) {
        const f = frame(na, nb, 0xffff, i, 64);
        sent.push(f);
        await na.send(f);
      }
      const got: Uint8Array[] = [];
      for (let i = 0; i < sent.length; i++) got.push((await within(nb.receivePacket(), 20_000, `spread ${i}`)).frame);
      const key = (f: Uint8Array): string => Buffer.from(f).toString('hex');
      assert.deepEqual(got.map(key).sort(), sent.map(key).sort(), 'every spread frame arrived intact');
      assert.deepEqual(txCounts(na), plus(tx1, 2));
      assert.deepEqual(rxCounts(nb), plus(rx0, 2));
      const bytes = na.stats().reduce((s, p) => s + p.txBytes, 0);
      assert.ok(bytes > 0);
      console.log(`# vfio-net-mq: a stats ${JSON.stringify(na.stats())}`);
    } finally {
      await na.close();
      await nb?.close();
    }
  });

  test('multiqueue on vhost-user: one pair more than offered is refused; RSS is not offered', async () => {
    const pairs = pairsWanted();
    const [a] = nics();
    const err = await rejectsWithCode(openNet(`vfio:${a}`, { queuePairs: pairs + 1 }), 'EOPNOTSUPP', 'one pair more');
    assert.match(err.message, new RegExp(`device offers ${pairs}`));
    const n = await openNet(`vfio:${a}`, { queuePairs: pairs });
    try {
      // QEMU 7.2 offers RSS to a vhost peer only with its eBPF steering program, which attaches to a tap.
      assert.equal(n.device.deviceFeatures & NetFeature.RSS, 0n, 'RSS not offered on vhost-user');
      assert.equal(n.device.deviceFeatures & NetFeature.HASH_REPORT, 0n, 'HASH_REPORT not offered on vhost-user');
      assert.equal(n.rssLimits, undefined);
      await rejectsWithCode(
        n.setRss({ key: new Uint8Array(40), indirectionTable: [0, 1], hashTypes: ['ipv4'] }),
        'EOPNOTSUPP',
        'setRss',
      );
    } finally {
      await n.close();
    }
  });
}

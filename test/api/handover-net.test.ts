// net.handOver(): a NetDevice with frames flowing through mock:net's loopback moves between mock
// devices. Every frame sent is counted by sequence number where it comes back: none arrives twice,
// the driver completes each send once, frames sent after the last hand-over all arrive, and what is
// lost on receive is bounded by what the old device could hold. Every failure branch leaves the
// driver on its old device, still carrying frames.
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import {
  AbortError,
  Feature,
  NetFeature,
  VdpaError,
  openNet,
  type HandOverResult,
  type MockOptions,
  type NetDevice,
} from '../../lib';
import { TEST_TIMEOUT } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT * 2 };
const ETHERTYPE = 0x88b5; // IEEE local experimental
const BROADCAST = new Uint8Array(6).fill(0xff);
const SOURCE = Uint8Array.of(0x02, 0, 0, 0, 0, 1);

function frame(seq: number, dst = BROADCAST, length = 64): Uint8Array {
  const f = new Uint8Array(length);
  f.set(dst, 0);
  f.set(SOURCE, 6);
  f[12] = ETHERTYPE >> 8;
  f[13] = ETHERTYPE & 0xff;
  new DataView(f.buffer).setUint32(14, seq);
  return f;
}

function seqOf(f: Uint8Array): number | undefined {
  if (f.length < 18 || f[12] !== ETHERTYPE >> 8 || f[13] !== (ETHERTYPE & 0xff)) return undefined;
  return new DataView(f.buffer, f.byteOffset).getUint32(14);
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Frames sent in batches by `depth` senders and read back, counted by sequence number. */
class Traffic {
  next = 0;
  readonly sent: number[] = [];
  readonly seen = new Map<number, number>();
  readonly failures: Error[] = [];
  private stopped = false;
  private readonly senders: Promise<void>[] = [];
  private readonly reader: Promise<void>;
  private readonly ac = new AbortController();

  constructor(
    private readonly net: NetDevice,
    depth = 4,
    batch = 8,
  ) {
    for (let i = 0; i < depth; i++) this.senders.push(this.send(batch));
    this.reader = this.read();
  }

  get received(): number {
    return this.seen.size;
  }

  private async send(batch: number): Promise<void> {
    while (!this.stopped) {
      const seqs = Array.from({ length: batch }, () => this.next++);
      try {
        await this.net.sendBatch(seqs.map((s) => frame(s)));
        this.sent.push(...seqs);
      } catch (e) {
        this.failures.push(e as Error);
        return;
      }
    }
  }

  private async read(): Promise<void> {
    try {
      for (;;) {
        const s = seqOf(await this.net.receive({ signal: this.ac.signal }));
        if (s !== undefined) this.seen.set(s, (this.seen.get(s) ?? 0) + 1);
      }
    } catch (e) {
      if (!(e instanceof AbortError)) this.failures.push(e as Error);
    }
  }

  /** Resolves once `n` more frames came back. */
  async progress(n: number): Promise<void> {
    const until = this.received + n;
    while (this.received < until && this.failures.length === 0) await tick();
  }

  /** Stops sending, waits for the frames still on their way (until none came for 100 ms). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.senders);
    let last = -1;
    while (last !== this.received && this.received < this.sent.length) {
      last = this.received;
      await new Promise((r) => setTimeout(r, 100));
    }
    this.ac.abort();
    await this.reader;
  }

  /** Lets `n` more frames through, then stops: no send failed, and none sent from now on was lost. */
  async finishLosingNothingFromNow(n: number): Promise<void> {
    const after = this.next;
    await this.progress(n);
    await this.stop();
    assert.deepEqual(this.failures, []);
    assert.deepEqual(
      this.tally().lost.filter((s) => s >= after),
      [],
    );
  }

  /** The sequence numbers sent and not received, and those received more than once. */
  tally(): { lost: number[]; duplicated: number[]; unknown: number[] } {
    const sent = new Set(this.sent);
    return {
      lost: this.sent.filter((s) => !this.seen.has(s)),
      duplicated: [...this.seen].filter(([, n]) => n > 1).map(([s]) => s),
      unknown: [...this.seen.keys()].filter((s) => !sent.has(s)),
    };
  }
}

function txFrames(net: NetDevice): number {
  return net.stats().reduce((n, p) => n + p.txFrames, 0);
}

/** A frame out and back on `net` (broadcast: every filter takes it). */
async function stillWorks(net: NetDevice, path = 'mock:net'): Promise<void> {
  assert.equal(net.device.path, path);
  assert.equal(net.device.state, 'open');
  const f = frame(0xfffffff0);
  await net.send(f);
  for (;;) if (seqOf(await net.receive({ signal: AbortSignal.timeout(5000) })) === 0xfffffff0) return;
}

describe('net.handOver() between mock devices with frames flowing', () => {
  for (const variant of [
    { name: 'suspend', mock: { suspend: true }, method: 'suspend', pairs: 1 },
    { name: 'drain', mock: {}, method: 'drain', pairs: 1 },
    { name: 'suspend, 2 queue pairs', mock: { suspend: true, queuePairs: 2 }, method: 'suspend', pairs: 2 },
    { name: 'drain, packed ring, 2 queue pairs', mock: { queuePairs: 2 }, method: 'drain', pairs: 2, packed: true },
  ] as const) {
    test(`every frame comes back at most once through 8 hand-overs (${variant.name})`, T, async (t) => {
      const queueSize = 64;
      const net = await openNet('mock:net', {
        queueSize,
        queuePairs: variant.pairs,
        packed: 'packed' in variant,
        mock: variant.mock,
      });
      const events: HandOverResult[] = [];
      net.on('handOver', (r) => events.push(r));
      const traffic = new Traffic(net);
      const results: HandOverResult[] = [];
      for (let i = 0; i < 8; i++) {
        await traffic.progress(300);
        const old = net.device;
        results.push(await net.handOver('mock:net', { mock: variant.mock }));
        assert.equal(old.state, 'closed');
        assert.equal(net.device.state, 'open');
      }
      const after = traffic.next;
      await traffic.progress(300);
      await traffic.stop();
      assert.deepEqual(traffic.failures, [], 'no send or receive failed');
      assert.deepEqual(events, results, "each hand-over emitted 'handOver' with its result");
      for (const r of results) {
        assert.equal(r.method, variant.method);
        assert.equal(r.from, 'mock:net');
        assert.equal(r.to, 'mock:net');
        assert.ok(r.pausedMs >= 0);
      }
      assert.equal(txFrames(net), traffic.sent.length, 'the driver completed each frame sent once');
      const { lost, duplicated, unknown } = traffic.tally();
      assert.deepEqual(duplicated, [], 'no frame came back twice');
      assert.deepEqual(unknown, []);
      assert.deepEqual(
        lost.filter((s) => s >= after),
        [],
        'every frame sent after the last hand-over came back',
      );
      // What the old device could hold: its receive rings, and frames it had taken off its transmit rings.
      const bound = results.length * variant.pairs * 2 * queueSize;
      assert.ok(lost.length <= bound, `${lost.length} frames lost on receive, at most ${bound}`);
      t.diagnostic(
        `${traffic.sent.length} frames sent, ${lost.length} lost on receive, ` +
          `${results.reduce((n, r) => n + r.reissued, 0)} chains re-issued`,
      );
      await net.close();
    });
  }

  test('suspend: frames the old device left in its transmit ring go out on the new one', T, async () => {
    // The old device completes nothing after 200 chains: what is sent then stays in its rings.
    const net = await openNet('mock:net', { queueSize: 64, mock: { suspend: true, fault: 'stall', faultAfter: 200 } });
    const traffic = new Traffic(net, 2, 4);
    // Let the transmit ring fill up behind the stall.
    await new Promise((r) => setTimeout(r, 100));
    const stuck = traffic.next - traffic.sent.length;
    assert.ok(stuck > 0, 'sends wait on the stalled device');
    const r = await net.handOver('mock:net', { mock: { suspend: true } });
    assert.equal(r.method, 'suspend');
    assert.ok(r.reissued > 0, `re-issued ${r.reissued}`);
    const after = traffic.next;
    await traffic.progress(200);
    await traffic.stop();
    assert.deepEqual(traffic.failures, []);
    const { lost, duplicated } = traffic.tally();
    assert.deepEqual(duplicated, []);
    assert.equal(txFrames(net), traffic.sent.length);
    // Frames the stalled device never took were sent by the new one: they all came back.
    assert.deepEqual(
      lost.filter((s) => s >= after - stuck),
      [],
      'the frames that waited on the stalled device came back',
    );
    await net.close();
  });

  test('the old device breaks mid-switch (its suspend fails): frames it held go out on the new one', T, async () => {
    const net = await openNet('mock:net', { queueSize: 64, mock: { failSuspend: true } });
    const traffic = new Traffic(net);
    await traffic.progress(300);
    const r = await net.handOver('mock:net');
    assert.equal(r.method, 'reset');
    const after = traffic.next;
    await traffic.progress(300);
    await traffic.stop();
    assert.deepEqual(traffic.failures, [], 'no send failed, not even those the broken device held');
    const { lost, unknown } = traffic.tally();
    assert.deepEqual(unknown, []);
    assert.deepEqual(
      lost.filter((s) => s >= after),
      [],
    );
    await stillWorks(net);
    await net.close();
  });

  test('a drain that runs out of time resets the old device and sends what it held on the new one', T, async () => {
    const net = await openNet('mock:net', {
      queueSize: 64,
      requestTimeout: 300,
      mock: { fault: 'stall', faultAfter: 200 },
    });
    const timeouts: unknown[] = [];
    net.on('timeout', (e) => timeouts.push(e));
    const traffic = new Traffic(net, 2, 4);
    await new Promise((r) => setTimeout(r, 50));
    const r = await net.handOver('mock:net');
    assert.equal(r.method, 'reset');
    assert.ok(r.reissued > 0);
    await traffic.progress(200);
    await traffic.stop();
    assert.deepEqual(traffic.failures, []);
    assert.deepEqual(traffic.tally().duplicated, [], 'the stalled device sent none of what it held');
    assert.deepEqual(timeouts, [], "the old device's timeout was not reported");
    await net.close();
  });

  test('sends, receives and control commands issued during the switch wait and complete', T, async () => {
    // Completions take 100 ms: the drain lasts about that long.
    const net = await openNet('mock:net', { mock: { completionDelayMs: 100 } });
    const old = net.device;
    const reading = net.receive();
    const first = net.send(frame(1));
    const moving = net.handOver('mock:net');
    const command = net.setAllMulticast(true);
    while (net.device === old) await tick();
    assert.equal(old.state, 'open', 'the old device is still draining');
    const during = net.send(frame(2));
    const r = await moving;
    assert.equal(r.method, 'drain');
    await Promise.all([first, during, command]);
    const got = [seqOf(await reading), seqOf(await net.receive())];
    // Frame 1 went out on the old device: it may be lost on receive there, frame 2 may not.
    assert.ok(got.includes(2), `received ${got.join(', ')}`);
    await net.close();
  });
});

describe('net.handOver(): the control state goes along', () => {
  const OTHER = Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x99);
  const SET = Uint8Array.of(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01);
  const LISTED = Uint8Array.of(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02);
  const STRANGER = Uint8Array.of(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x03);

  /** The sequence numbers of the frames that came back within 200 ms. */
  async function echoes(net: NetDevice, frames: Uint8Array[]): Promise<number[]> {
    await net.sendBatch(frames);
    const got: number[] = [];
    const signal = AbortSignal.timeout(200);
    try {
      for (;;) got.push(seqOf(await net.receive({ signal })) as number);
    } catch (e) {
      assert.ok(e instanceof AbortError, String(e));
    }
    return got.sort((a, b) => a - b);
  }

  function tagged(seq: number, dst: Uint8Array, vid: number): Uint8Array {
    const f = new Uint8Array(68);
    f.set(dst, 0);
    f.set(SOURCE, 6);
    f.set([0x81, 0, vid >> 8, vid & 0xff, ETHERTYPE >> 8, ETHERTYPE & 0xff], 12);
    new DataView(f.buffer).setUint32(18, seq);
    return f;
  }

  test('MAC address, MAC table, receive modes and VLANs are applied on the new device', T, async () => {
    const net = await openNet('mock:net');
    await net.setMac(SET);
    await net.setMacTable({ unicast: [LISTED] });
    await net.setPromiscuous(false);
    await net.setAllMulticast(false);
    await net.addVlan(5);
    await net.addVlan(6);
    await net.removeVlan(6);
    const probe = async (): Promise<number[]> => {
      const got = await echoes(net, [frame(1, SET), frame(2, LISTED), frame(3, STRANGER), frame(4, OTHER)]);
      // VLAN-tagged frames: seq read at 18, so count them apart.
      await net.sendBatch([tagged(5, SET, 5), tagged(6, SET, 6)]);
      const signal = AbortSignal.timeout(200);
      try {
        for (;;) {
          const f = await net.receive({ signal });
          got.push(new DataView(f.buffer, f.byteOffset).getUint32(18));
        }
      } catch (e) {
        assert.ok(e instanceof AbortError);
      }
      return got;
    };
    assert.deepEqual(await probe(), [1, 2, 5], 'the filters on the first device');
    const r = await net.handOver('mock:net', { mock: { mac: OTHER } });
    assert.equal(r.reissued, 0);
    assert.equal(net.macAddress, '02:aa:bb:cc:dd:01', 'the MAC set with setMac is kept');
    assert.deepEqual(await probe(), [1, 2, 5], 'the same filters on the new device');
    await net.close();
  });

  test('without setMac, mac follows the new device; linkUp and link events follow it too', T, async () => {
    const net = await openNet('mock:net', { mock: { commandFrames: true } });
    assert.equal(net.macAddress, '52:54:00:12:34:56');
    const links: boolean[] = [];
    net.on('link', (up) => links.push(up));
    const old = net.device;
    await net.handOver('mock:net', { mock: { mac: OTHER, commandFrames: true } });
    assert.equal(net.macAddress, '52:54:00:12:34:99');
    assert.equal(net.linkUp, true);
    // A link-down command frame to the new device: its config interrupt reaches the listener.
    const down = frame(0, BROADCAST, 60);
    down[12] = 0x88;
    down[13] = 0xb6;
    down[14] = 0;
    await net.send(down);
    while (links.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(links, [false]);
    assert.equal(net.linkUp, false);
    assert.equal(old.state, 'closed');
    await net.close();
  });

  test('a command the new device refuses fails the hand-over with EIO; the driver stays', T, async () => {
    const net = await openNet('mock:net', { queuePairs: 2, mock: { queuePairs: 2 } });
    const traffic = new Traffic(net, 2, 4);
    await net.setPromiscuous(true);
    for (const [cls, command] of [
      ['rx', 'VIRTIO_NET_CTRL_RX_PROMISC'],
      ['mq', 'VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET'],
    ] as const) {
      await assert.rejects(
        net.handOver('mock:net', { mock: { queuePairs: 2, refuseControl: cls } }),
        (e: VdpaError) => {
          assert.ok(e instanceof VdpaError, String(e));
          assert.equal(e.code, 'EIO');
          assert.match(e.message, new RegExp(command));
          return true;
        },
      );
      await traffic.progress(100);
    }
    await traffic.stop();
    assert.deepEqual(traffic.failures, []);
    assert.deepEqual(traffic.tally().lost, [], 'no hand-over happened: nothing was lost');
    await stillWorks(net);
    await net.close();
  });
});

describe('net.handOver() refusals and failures leave the driver on its device', () => {
  async function refusedWithTraffic(
    t: TestContext,
    open: Parameters<typeof openNet>[1],
    refused: [string, MockOptions, RegExp][],
  ): Promise<void> {
    const net = await openNet('mock:net', open);
    const traffic = new Traffic(net, 2, 4);
    for (const [what, mock, message] of refused) {
      await assert.rejects(net.handOver('mock:net', { mock }), (e: Error) => {
        assert.ok(e instanceof RangeError, `${what}: ${e.message}`);
        assert.match(e.message, message);
        return true;
      });
      await traffic.progress(50);
      t.diagnostic(`${what}: refused`);
    }
    await traffic.stop();
    assert.deepEqual(traffic.failures, []);
    assert.deepEqual(traffic.tally().lost, [], 'the driver never left its device');
    await stillWorks(net);
    await net.close();
  }

  test('incompatible devices are RangeErrors', T, (t) =>
    refusedWithTraffic(t, { queuePairs: 3, queueSize: 128, mock: { queuePairs: 4, mtu: 9000 } }, [
      ['fewer queue pairs', { queuePairs: 2, mtu: 9000 }, /offers 2 queue pairs, the driver uses 3/],
      ['no multiqueue', { mtu: 9000 }, /lacks features the driver uses \(VIRTIO_NET_F_MQ\)/],
      ['smaller MTU', { queuePairs: 4, mtu: 1500 }, /MTU is 1500, below the 9000/],
      ['smaller queues', { queuePairs: 4, mtu: 9000, maxQueueSize: 64 }, /queue 0 holds fewer than 128/],
    ]),
  );

  test('a device without a feature the driver uses is a RangeError; one it can live without is fine', T, async () => {
    const net = await openNet('mock:net', { txChecksum: true, packed: true });
    const traffic = new Traffic(net, 2, 4);
    for (const [feature, name] of [
      [NetFeature.MRG_RXBUF, 'VIRTIO_NET_F_MRG_RXBUF'],
      [NetFeature.CSUM, 'VIRTIO_NET_F_CSUM'],
      [NetFeature.CTRL_VQ, 'VIRTIO_NET_F_CTRL_VQ'],
      [Feature.RING_PACKED, 'VIRTIO_F_RING_PACKED'],
    ] as const) {
      await assert.rejects(net.handOver('mock:net', { mock: { withholdFeatures: Number(feature) } }), (e: Error) => {
        assert.ok(e instanceof RangeError, `${name}: ${e.message}`);
        assert.match(e.message, new RegExp(`lacks features the driver uses \\(${name}\\)`));
        return true;
      });
      await traffic.progress(50);
    }
    // Announce and the MAC in config: the driver lives without them (mac is then all zeroes).
    const r = await net.handOver('mock:net', {
      mock: { withholdFeatures: Number(NetFeature.GUEST_ANNOUNCE | NetFeature.MAC) },
    });
    assert.equal(r.to, 'mock:net');
    assert.equal(net.macAddress, '00:00:00:00:00:00');
    // A VLAN filter needs VIRTIO_NET_F_CTRL_VLAN on the new device; before any was set it did not.
    await net.addVlan(3);
    await assert.rejects(
      net.handOver('mock:net', { mock: { withholdFeatures: Number(NetFeature.CTRL_VLAN) } }),
      (e: Error) => e instanceof RangeError && /VIRTIO_NET_F_CTRL_VLAN/.test(e.message),
    );
    await traffic.finishLosingNothingFromNow(100);
    await stillWorks(net);
    await net.close();
  });

  test('a larger MTU is accepted (the driver keeps its own); another device type is ENODEV', T, async () => {
    const net = await openNet('mock:net');
    await net.addVlan(7);
    // A larger MTU is fine, and the VLAN filter goes along.
    const r = await net.handOver('mock:net', { mock: { mtu: 9000 } });
    assert.equal(r.to, 'mock:net');
    assert.equal(net.mtu, 1500, 'the MTU the driver sends with stays');
    await assert.rejects(net.handOver('mock:blk'), (e: VdpaError) => e instanceof VdpaError && e.code === 'ENODEV');
    await stillWorks(net);
    await net.close();
  });

  test('a new device that fails to open or to negotiate is a VdpaError', T, async () => {
    const net = await openNet('mock:net');
    await assert.rejects(
      net.handOver('/dev/vhost-vdpa-4095'),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'ENOENT',
    );
    await stillWorks(net);
    await assert.rejects(
      net.handOver('mock:net', { mock: { fault: 'no-features-ok' } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'EOPNOTSUPP' && /FEATURES_OK/.test(e.message),
    );
    await stillWorks(net);
    await net.close();
  });

  test('bad arguments are TypeErrors and RangeErrors', T, async () => {
    const net = await openNet('mock:net');
    await assert.rejects(net.handOver(1 as unknown as string), TypeError);
    await assert.rejects(net.handOver('mock:net', 'x' as unknown as object), TypeError);
    await assert.rejects(net.handOver('mock:net', { signal: 'x' as unknown as AbortSignal }), TypeError);
    await assert.rejects(net.handOver('mock:net', { timeout: 0 }), RangeError);
    await assert.rejects(net.handOver('mock:net', { timeout: 1.5 }), RangeError);
    await assert.rejects(net.handOver('mock:net', { drain: 1 as unknown as boolean }), TypeError);
    await assert.rejects(net.handOver('mock:net', { mock: { mtu: 10 } }), RangeError);
    await assert.rejects(net.handOver('nowhere'), (e: VdpaError) => e.code === 'EINVAL');
    await stillWorks(net);
    // Control commands work again once a refused hand-over is over.
    await net.setPromiscuous(true);
    await net.close();
  });

  test('two hand-overs at once: the second is EBUSY, the first completes', T, async () => {
    const net = await openNet('mock:net');
    const traffic = new Traffic(net, 2, 4);
    const first = net.handOver('mock:net', { mock: { openDelayMs: 50 } });
    await assert.rejects(net.handOver('mock:net'), (e: VdpaError) => e instanceof VdpaError && e.code === 'EBUSY');
    const r = await first;
    assert.equal(r.to, 'mock:net');
    await net.handOver('mock:net');
    await traffic.finishLosingNothingFromNow(100);
    await stillWorks(net);
    await net.close();
  });

  test('a hand-over requested during close is EBADF; a close during a hand-over cancels it', T, async () => {
    const net = await openNet('mock:net');
    const closing = net.close();
    await assert.rejects(net.handOver('mock:net'), (e: VdpaError) => e instanceof VdpaError && e.code === 'EBADF');
    await closing;

    const net2 = await openNet('mock:net');
    const reading = assert.rejects(net2.receive(), (e: VdpaError) => e instanceof VdpaError && e.code === 'ECANCELED');
    const moving = assert.rejects(
      net2.handOver('mock:net', { mock: { openDelayMs: 50 } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'EBADF',
    );
    await net2.close();
    await moving;
    await reading;
    assert.equal(net2.device.state, 'closed');
  });

  test('abort and timeout of the bring-up', T, async () => {
    const net = await openNet('mock:net');
    const traffic = new Traffic(net, 2, 4);
    await assert.rejects(net.handOver('mock:net', { signal: AbortSignal.abort('no') }), AbortError);
    const ac = new AbortController();
    const moving = net.handOver('mock:net', { signal: ac.signal, mock: { openDelayMs: 20 } });
    ac.abort('changed my mind');
    await assert.rejects(moving, (e: AbortError) => e instanceof AbortError && e.cause === 'changed my mind');
    await traffic.progress(50);
    // Opening the new device takes 500 ms: a 20 ms timeout ends the hand-over first.
    await assert.rejects(
      net.handOver('mock:net', { timeout: 20, mock: { openDelayMs: 500 } }),
      (e: VdpaError) => e instanceof VdpaError && e.code === 'ETIMEDOUT',
    );
    // A control command waiting for the hand-over can be aborted meanwhile.
    const slow = net.handOver('mock:net', { mock: { openDelayMs: 200 } });
    await assert.rejects(net.setPromiscuous(true, { signal: AbortSignal.timeout(20) }), AbortError);
    await slow;
    await traffic.progress(50);
    await traffic.stop();
    assert.deepEqual(traffic.failures, []);
    await stillWorks(net);
    await net.close();
  });
});

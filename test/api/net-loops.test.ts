// Native net loops (NetDevice.forward/generate/sink) over mock:net, a loopback NIC: what a device
// sends comes back on its own receive queue, so two mock NICs are wired by a forward between them.
// Counts and bytes, not speed: the rate test bounds only what cannot depend on a slow machine.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AbortError, NetLoop, VdpaError, openNet, type NetDevice, type NetOptions } from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes, failsWith, rejectsWith, rejectsWithCode, tick } from '../helpers/util';
import { MERGEABLE_LIES } from '../helpers/net-faults';

const ETH_HEADER = 14;

async function withTwo(a: NetOptions, b: NetOptions, fn: (a: NetDevice, b: NetDevice) => Promise<void>): Promise<void> {
  const na = await openNet('mock:net', a);
  const nb = await openNet('mock:net', b).catch(async (e: unknown) => {
    await na.close();
    throw e;
  });
  try {
    await fn(na, nb);
  } finally {
    await na.close();
    await nb.close();
  }
}

async function withOne(options: NetOptions, fn: (net: NetDevice) => Promise<void>): Promise<void> {
  const net = await openNet('mock:net', options);
  try {
    await fn(net);
  } finally {
    await net.close();
  }
}

/** Waits (a bounded number of event-loop turns) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + TEST_TIMEOUT / 2;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A frame as generate({ size }) makes it. */
function generated(net: NetDevice, size: number): Uint8Array {
  const f = new Uint8Array(size);
  f.fill(0xff, 0, 6);
  f.set(net.mac, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = ETH_HEADER; i < size; i++) f[i] = (i - ETH_HEADER) & 0xff;
  return f;
}

describe('native net loops (mock:net)', () => {
  const rng = new Rng();

  test('generate + sink on one loopback NIC: every frame counted, with its bytes', { timeout: TEST_TIMEOUT }, () =>
    withOne({}, async (net) => {
      for (const size of [64, 1514]) {
        const sink = net.sink();
        const gen = net.generate({ size, count: 5000 });
        assert.ok(gen instanceof NetLoop);
        assert.deepEqual(await gen.done, { frames: 5000, bytes: 5000 * size, drops: 0, errors: 0 });
        await until(() => sink.stats().frames === 5000, 'the sink to count 5000 frames');
        assert.deepEqual(await sink.stop(), { frames: 5000, bytes: 5000 * size, drops: 0, errors: 0 });
      }
      // Both queues are the device's own again.
      const rx = net.receive();
      await net.send(rng.bytes(100));
      assert.equal((await rx).length, 100);
    }),
  );

  test('generated frames arrive intact: size (the documented frame) or a given frame', { timeout: TEST_TIMEOUT }, () =>
    withOne({}, async (net) => {
      const g = net.generate({ size: 80, count: 3 });
      assert.deepEqual(await g.done, { frames: 3, bytes: 240, drops: 0, errors: 0 });
      for (let i = 0; i < 3; i++) assertBytes(await net.receive(), generated(net, 80), `generated frame ${i}`);
      const frame = rng.bytes(1514);
      const copy = frame.slice();
      const h = net.generate({ frame, count: 2 });
      frame.fill(0); // copied when the loop was made
      await h.done;
      assertBytes(await net.receive(), copy, 'given frame 0');
      assertBytes(await net.receive(), copy, 'given frame 1');
    }),
  );

  for (const rxBufferSize of [undefined, 1024]) {
    test(
      `forward A -> B: frames sent on A arrive on B intact, in order (A rxBufferSize ${rxBufferSize ?? 'default'})`,
      { timeout: TEST_TIMEOUT },
      () =>
        withTwo(rxBufferSize ? { rxBufferSize } : {}, {}, async (a, b) => {
          const fwd = a.forward(b);
          // A's receive queue and B's transmit queue are the loop's; A can still send.
          await rejectsWithCode(a.receive(), 'EBUSY', 'receive on A');
          await rejectsWithCode(b.send(rng.bytes(60)), 'EBUSY', 'send on B');
          const frames = Array.from({ length: 40 }, (_, i) => rng.bytes(i === 0 ? ETH_HEADER : 14 + ((i * 97) % 1501)));
          const copies = frames.map((f) => f.slice());
          const got: Uint8Array[] = [];
          const reading = (async () => {
            for (let i = 0; i < frames.length; i++) got.push(await b.receive());
          })();
          for (const f of frames) await a.send(f);
          await reading;
          got.forEach((f, i) => assertBytes(f, copies[i] as Uint8Array, `frame ${i}`));
          const bytes = copies.reduce((n, f) => n + f.length, 0);
          assert.deepEqual(await fwd.stop(), { frames: 40, bytes, drops: 0, errors: 0 });
          // Stopped: A receives its own frames again, B sends.
          const rx = a.receive();
          await a.send(rng.bytes(70));
          assert.equal((await rx).length, 70);
          await b.send(rng.bytes(60));
        }),
    );
  }

  test('forward drops (and counts) frames longer than the other NIC carries', { timeout: TEST_TIMEOUT }, () =>
    withTwo({ mock: { mtu: 4000 } }, {}, async (a, b) => {
      const fwd = a.forward(b);
      await a.send(rng.bytes(3000));
      const small = rng.bytes(100);
      const copy = small.slice();
      await a.send(small);
      assertBytes(await b.receive(), copy, 'the frame that fits');
      await until(() => fwd.stats().drops === 1, 'the long frame counted as a drop');
      assert.deepEqual(await fwd.stop(), { frames: 1, bytes: 100, drops: 1, errors: 0 });
    }),
  );

  test(
    'forward bothWays holds all four queues; both devices are theirs again after stop',
    { timeout: TEST_TIMEOUT },
    () =>
      withTwo({}, {}, async (a, b) => {
        const fwd = a.forward(b, { bothWays: true });
        for (const [n, name] of [
          [a, 'A'],
          [b, 'B'],
        ] as const) {
          await rejectsWithCode(n.send(rng.bytes(60)), 'EBUSY', `send on ${name}`);
          await rejectsWithCode(n.receive(), 'EBUSY', `receive on ${name}`);
        }
        assert.throws(
          () => b.sink(),
          (e: unknown) => e instanceof VdpaError && e.code === 'EBUSY',
        );
        assert.deepEqual(await fwd.stop(), { frames: 0, bytes: 0, drops: 0, errors: 0 });
        for (const n of [a, b]) {
          const rx = n.receive();
          await n.send(rng.bytes(64));
          assert.equal((await rx).length, 64);
        }
      }),
  );

  test(
    'forward bothWays carries frames both ways: a burst queued just before keeps circulating, none lost',
    { timeout: TEST_TIMEOUT },
    () =>
      withTwo({}, {}, async (a, b) => {
        // Two loopbacks: what A sends comes back on A and goes out on B, comes back on B and goes out
        // on A. The bursts are queued before the loop takes the queues, so they go first.
        const sent = [a.sendBatch(Array.from({ length: 8 }, () => rng.bytes(64))), b.sendBatch([rng.bytes(100)])];
        const fwd = a.forward(b, { bothWays: true });
        await Promise.all(sent);
        await until(() => fwd.stats().frames >= 9 * 50, 'the nine frames to go round 50 times');
        assert.equal(fwd.stats().drops + fwd.stats().errors, 0, 'nothing dropped while running');
        const s = await fwd.stop();
        // Frames received but not passed on when it stops count as drops: at most the nine.
        assert.ok(s.drops <= 9 && s.errors === 0, `${s.drops} drops, ${s.errors} errors at stop`);
        // Bytes only ever come from the nine frames: 8 of 64 bytes and 1 of 100 in circulation.
        assert.ok(s.frames >= 450, `${s.frames} frames`);
        assert.ok(s.bytes >= s.frames * 64 && s.bytes <= s.frames * 100, `${s.bytes} bytes in ${s.frames} frames`);
      }),
  );

  test(
    'rate: at most rate frames per second (a lower bound on the time only), count exact',
    { timeout: TEST_TIMEOUT },
    () =>
      withOne({}, async (net) => {
        const sink = net.sink();
        const start = performance.now();
        const gen = net.generate({ size: 64, count: 40, rate: 400 });
        await new Promise((r) => setTimeout(r, 30));
        const mid = gen.stats().frames;
        const elapsed = (performance.now() - start) / 1000;
        // One frame at once, then one per 2.5 ms with at most 4 (10 ms) saved up.
        assert.ok(mid <= 1 + 400 * elapsed + 4, `${mid} frames after ${elapsed}s`);
        assert.equal((await gen.done).frames, 40);
        assert.ok(performance.now() - start >= 39 * 2.5 - 10 - 1, 'the rate held the generator back');
        await until(() => sink.stats().frames === 40, 'the sink to count 40');
        await sink.stop();
      }),
  );

  test('stop(): a generator without count ends with what the device took; done agrees', { timeout: TEST_TIMEOUT }, () =>
    withOne({}, async (net) => {
      const sink = net.sink();
      const gen = net.generate({ size: 64 });
      await until(() => gen.stats().frames > 1000, 'a thousand frames');
      const stats = await gen.stop();
      assert.ok(stats.frames > 1000);
      assert.equal(stats.bytes, stats.frames * 64);
      assert.deepEqual(await gen.done, stats);
      assert.deepEqual(gen.stats(), stats);
      await until(() => sink.stats().frames === stats.frames, 'the sink to count every frame sent');
      await sink.stop();
      await net.send(rng.bytes(60));
    }),
  );

  test('signal: abort ends the loop with AbortError; an aborted signal holds nothing', { timeout: TEST_TIMEOUT }, () =>
    withOne({}, async (net) => {
      const ac = new AbortController();
      const sink = net.sink({ signal: ac.signal });
      const gen = net.generate({ size: 64, count: 100 });
      await gen.done;
      await until(() => sink.stats().frames === 100, 'the sink to count 100');
      ac.abort(new Error('enough'));
      const err = await rejectsWith(sink.done, AbortError, 'aborted sink');
      assert.equal((err as AbortError).code, 'ABORT_ERR');
      assert.equal(sink.stats().frames, 100);
      await rejectsWith(sink.stop(), AbortError, 'stop after the abort');
      const early = net.generate({ size: 64, signal: AbortSignal.abort() });
      await rejectsWith(early.done, AbortError, 'already aborted');
      const rx = net.receive();
      await net.send(rng.bytes(60));
      assert.equal((await rx).length, 60);
    }),
  );

  test(
    'close() of either device stops the loop first; done resolves with its counts',
    { timeout: TEST_TIMEOUT },
    async () => {
      const a = await openNet('mock:net');
      const b = await openNet('mock:net');
      try {
        const fwd = a.forward(b);
        await a.send(rng.bytes(100));
        assert.equal((await b.receive()).length, 100);
        await until(() => fwd.stats().frames === 1, 'B to return the frame');
        const sink = b.sink();
        await b.close();
        assert.equal((await fwd.done).frames, 1);
        assert.equal((await sink.done).frames, 0);
        // A's receive queue is its own again.
        const rx = a.receive();
        await a.send(rng.bytes(60));
        assert.equal((await rx).length, 60);
        const gen = a.generate({ size: 64 });
        await until(() => gen.stats().frames > 0, 'a frame');
        await a.close();
        assert.ok((await gen.done).frames > 0);
      } finally {
        await a.close();
        await b.close();
      }
    },
  );

  test('EBUSY: the held queue only; a waiting reader; another loop; handOver', { timeout: TEST_TIMEOUT }, () =>
    withOne({}, async (net) => {
      const waiting = net.receive();
      const sink = net.sink();
      const err = await rejectsWithCode(waiting, 'EBUSY', 'a reader waiting when the sink started');
      assert.match(err.message, /every receive queue is held by a native loop/);
      assert.equal(err.syscall, 'receive');
      assert.throws(
        () => net.sink(),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBUSY',
      );
      await net.send(rng.bytes(60)); // the transmit queue is free
      const gen = net.generate({ size: 64, count: 10 });
      await rejectsWithCode(net.send(rng.bytes(60)), 'EBUSY', 'send while generating');
      await rejectsWithCode(net.sendBatch([rng.bytes(60)]), 'EBUSY', 'sendBatch while generating');
      await rejectsWithCode(net.handOver('mock:net'), 'EBUSY', 'handOver');
      await gen.done;
      await net.send(rng.bytes(60));
      await sink.stop();
    }),
  );

  test('queue: loops on pair 1; the device keeps using pair 0', { timeout: TEST_TIMEOUT }, () =>
    withOne({ queuePairs: 2, mock: { queuePairs: 2 } }, async (net) => {
      const sink = net.sink({ queue: 1 });
      const gen = net.generate({ size: 64, queue: 1 });
      await rejectsWithCode(net.send(rng.bytes(60), { queue: 1 }), 'EBUSY', 'send on pair 1');
      for (let i = 0; i < 5; i++) {
        const rx = net.receive();
        await net.send(rng.bytes(90)); // round-robin skips the held pair
        assert.equal((await rx).length, 90);
      }
      const sent = await gen.stop();
      assert.ok(sent.frames > 0);
      await until(() => sink.stats().frames === sent.frames, 'the sink on pair 1 to count every frame');
      assert.deepEqual(await sink.stop(), { frames: sent.frames, bytes: sent.frames * 64, drops: 0, errors: 0 });
      const [p0, p1] = net.stats();
      assert.deepEqual([p0?.txFrames, p0?.rxFrames, p1?.txFrames, p1?.rxFrames], [5, 5, 0, 0]);
    }),
  );

  test('sends queued before the loop go first; the loop waits for their slots', { timeout: TEST_TIMEOUT }, () =>
    withOne({ queueSize: 16 }, async (net) => {
      const sink = net.sink();
      const sends = Array.from({ length: 40 }, () => net.send(rng.bytes(200)));
      const gen = net.generate({ size: 64, count: 10 });
      await Promise.all(sends);
      assert.deepEqual(await gen.done, { frames: 10, bytes: 640, drops: 0, errors: 0 });
      await until(() => sink.stats().frames === 50, 'the sink to count 50');
      assert.equal((await sink.stop()).bytes, 40 * 200 + 640);
    }),
  );

  test('argument errors', { timeout: TEST_TIMEOUT }, () =>
    withTwo({}, { rxChecksum: true }, async (net, csum) => {
      await failsWith(() => net.generate(undefined as never), TypeError, 'no options');
      await failsWith(() => net.generate({}), TypeError, 'neither size nor frame');
      await failsWith(() => net.generate({ size: 13 }), RangeError, 'size 13');
      await failsWith(() => net.generate({ size: net.mtu + 15 }), RangeError, 'size past the MTU');
      await failsWith(() => net.generate({ size: '64' as never }), TypeError, 'size a string');
      await failsWith(() => net.generate({ size: 64, frame: new Uint8Array(64) }), TypeError, 'size and frame');
      await failsWith(() => net.generate({ frame: [1, 2] as never }), TypeError, 'frame an array');
      await failsWith(() => net.generate({ frame: new Uint8Array(10) }), RangeError, 'frame too short');
      await failsWith(() => net.generate({ size: 64, count: 0 }), RangeError, 'count 0');
      await failsWith(() => net.generate({ size: 64, rate: 0 }), RangeError, 'rate 0');
      await failsWith(() => net.generate({ size: 64, rate: 1.5 }), RangeError, 'rate 1.5');
      await failsWith(() => net.generate({ size: 64, queue: 1 }), RangeError, 'queue past the pairs');
      await failsWith(() => net.generate({ size: 64, signal: {} as never }), TypeError, 'signal');
      await failsWith(() => net.sink({ queue: -1 }), RangeError, 'sink queue');
      await failsWith(() => net.sink(7 as never), TypeError, 'sink options');
      await failsWith(() => net.forward(net), TypeError, 'forward to itself');
      await failsWith(() => net.forward({} as never), TypeError, 'forward to a non-device');
      await failsWith(() => net.forward(csum, { bothWays: 1 as never }), TypeError, 'bothWays');
      await failsWith(() => csum.forward(net), TypeError, 'forward from an rxChecksum device');
      // Nothing was held by the failed calls.
      const rx = net.receive();
      await net.send(rng.bytes(60));
      assert.equal((await rx).length, 60);
    }),
  );

  test('a device opened with hashReport (a 20-byte header) is refused by every loop', { timeout: TEST_TIMEOUT }, () =>
    withTwo({}, { hashReport: true, mock: { rss: true } }, async (net, hashed) => {
      await failsWith(() => hashed.generate({ size: 64 }), TypeError, 'generate with hashReport');
      await failsWith(() => hashed.sink(), TypeError, 'sink with hashReport');
      await failsWith(() => net.forward(hashed), TypeError, 'forward to a hashReport device');
      await failsWith(() => hashed.forward(net), TypeError, 'forward from a hashReport device');
      const rx = hashed.receive();
      await hashed.send(rng.bytes(60));
      assert.equal((await rx).length, 60);
    }),
  );

  for (const fault of ['bad-used-id', 'long-used-len', 'used-idx-jump']) {
    test(
      `a broken ring (${fault}) ends generate and sink with EPROTO; the device's own use fails too`,
      { timeout: TEST_TIMEOUT },
      () =>
        withOne({ queueSize: 64, mock: { fault } }, async (net) => {
          const sink = net.sink();
          const gen = net.generate({ size: 64, count: 10 });
          for (const [loop, what] of [
            [sink, 'sink'],
            [gen, 'generate'],
          ] as const) {
            const err = await rejectsWithCode(loop.done, 'EPROTO', what);
            assert.match(err.message, /device broke the virtio rules/);
          }
          await rejectsWithCode(net.receive(), 'EPROTO', 'receive afterwards');
          await rejectsWithCode(net.send(new Uint8Array(60)), 'EPROTO', 'send afterwards');
        }),
    );
  }

  test(
    'a device that never returns a frame (stall): close() still ends the loop',
    { timeout: TEST_TIMEOUT },
    async () => {
      const net = await openNet('mock:net', { mock: { fault: 'stall' } });
      const gen = net.generate({ size: 64, count: 10 });
      await tick();
      await net.close();
      assert.deepEqual(await gen.done, { frames: 0, bytes: 0, drops: 0, errors: 0 });
    },
  );

  for (const [netFault, reason] of Object.entries(MERGEABLE_LIES)) {
    test(
      `a lying device (${netFault}) ends a sink with EPROTO; the receive queue stays broken`,
      { timeout: TEST_TIMEOUT },
      () =>
        withOne({ queueSize: 64, rxBufferSize: 1024, mock: { netFault, faultAfter: 2 } }, async (net) => {
          const sink = net.sink();
          const ended = rejectsWithCode(sink.done, 'EPROTO', netFault);
          // Two frames get through (one over two buffers), then the device lies about one over two.
          await net.send(rng.bytes(100));
          await net.send(rng.bytes(1500));
          await until(() => sink.stats().frames === 2, 'two frames');
          await net.send(rng.bytes(1500));
          const err = await ended;
          assert.match(err.message, reason);
          assert.match(err.message, /device broke the virtio rules/);
          assert.equal(err.syscall, 'virtqueue 0');
          assert.equal(sink.stats().frames, 2);
          await rejectsWithCode(net.receive(), 'EPROTO', 'receive after the violation');
          await net.send(rng.bytes(60)); // transmit is another queue
          assert.equal(net.device.state, 'open');
        }),
    );
  }

  test('a lying device under a forward: the loop ends, the other NIC keeps working', { timeout: TEST_TIMEOUT }, () =>
    withTwo(
      { queueSize: 64, rxBufferSize: 1024, mock: { netFault: 'mrg-zero-buffers', faultAfter: 1 } },
      {},
      async (a, b) => {
        const fwd = a.forward(b);
        const ended = rejectsWithCode(fwd.done, 'EPROTO', 'the forward');
        await a.send(rng.bytes(100));
        assert.equal((await b.receive()).length, 100);
        await a.send(rng.bytes(100));
        await ended;
        await rejectsWithCode(a.receive(), 'EPROTO', 'receive on A');
        const rx = b.receive();
        await b.send(rng.bytes(60));
        assert.equal((await rx).length, 60);
        await tick();
      },
    ),
  );
});

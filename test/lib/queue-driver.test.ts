// QueueDriver (lib/queue.ts) against a fake native queue: tokens, one submit per tick, partial
// acceptance when the ring is full, completion dispatch, failure, and the event-loop reference.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { vdpaError, type VdpaError } from '../../lib/errors';
import type { NativeQueue } from '../../lib/native';
import { QueueDriver, type ChainSegment } from '../../lib/queue';

interface Submitted {
  token: number;
  segments: ChainSegment[];
}

/** A native queue that records what it is given; `room` chains fit before the ring is full. */
class FakeQueue implements NativeQueue {
  readonly completions: Uint32Array;
  readonly index = 0;
  submits: Submitted[][] = [];
  room = Infinity;
  refs = 0;
  throwOnSubmit: Error | undefined;
  constructor(readonly size: number) {
    this.completions = new Uint32Array(2 * size);
  }
  submit(batch: Uint32Array, count: number): number {
    if (this.throwOnSubmit) throw this.throwOnSubmit;
    const taken = Math.min(count, this.room);
    const chains: Submitted[] = [];
    let w = 0;
    for (let i = 0; i < taken; i++) {
      const token = batch[w++] as number;
      const n = batch[w++] as number;
      const segments: ChainSegment[] = [];
      for (let s = 0; s < n; s++, w += 4)
        segments.push({
          region: batch[w] as number,
          offset: batch[w + 1] as number,
          length: batch[w + 2] as number,
          writable: batch[w + 3] === 1,
        });
      chains.push({ token, segments });
    }
    this.submits.push(chains);
    this.room -= taken;
    return taken;
  }
  ref(): void {
    this.refs++;
  }
  unref(): void {
    this.refs--;
  }
}

interface Done {
  ctx: string;
  token: number;
  len: number;
  err: Error | undefined;
}

function setup(size = 4, maxSegments = 1) {
  const fake = new FakeQueue(size);
  const done: Done[] = [];
  let keepAlive = true;
  const driver = new QueueDriver<string>(
    fake,
    (ctx, token, len, err) => done.push({ ctx, token, len, err }),
    () => keepAlive,
    (reason) => vdpaError('EPROTO', 'virtqueue 0', 'fake', reason),
    maxSegments,
  );
  /** The device returns `pairs` of [token, len], as the native completion callback would. */
  const complete = (pairs: [number, number][], broken?: string): void => {
    pairs.forEach(([t, len], i) => {
      fake.completions[2 * i] = t;
      fake.completions[2 * i + 1] = len;
    });
    driver.complete(pairs.length, broken);
  };
  return { fake, done, driver, complete, setKeepAlive: (v: boolean) => (keepAlive = v) };
}

const seg = (offset: number, length = 512, writable = false): ChainSegment => ({ region: 3, offset, length, writable });
const microtask = (): Promise<void> => new Promise((r) => queueMicrotask(r));

describe('QueueDriver', () => {
  test('tokens are unique slots; -1 when all are taken', () => {
    const { driver } = setup(4);
    const tokens = [0, 1, 2, 3].map(() => driver.tryAcquire());
    assert.deepEqual([...tokens].sort(), [0, 1, 2, 3]);
    assert.equal(driver.tryAcquire(), -1);
  });

  test('chains queued in one tick go to native code in one submit, segments intact', async () => {
    const { fake, driver } = setup(8, 3);
    for (let i = 0; i < 5; i++) {
      const t = driver.tryAcquire();
      driver.enqueue(t, [seg(i * 1024), seg(i * 1024 + 512, 100, true)], `c${i}`);
    }
    assert.equal(fake.submits.length, 0, 'nothing is submitted synchronously');
    assert.equal(driver.pending, 5);
    await microtask();
    assert.equal(fake.submits.length, 1);
    const chains = fake.submits[0] as Submitted[];
    assert.equal(chains.length, 5);
    assert.deepEqual(chains[2]?.segments, [seg(2048), seg(2560, 100, true)]);
  });

  test('a batch bigger than its first guess grows (chains with many segments)', async () => {
    const { fake, driver } = setup(4, 1);
    const t = driver.tryAcquire();
    const many = Array.from({ length: 40 }, (_, i) => seg(i * 512));
    driver.enqueue(t, many, 'big');
    await microtask();
    assert.deepEqual(fake.submits[0]?.[0]?.segments, many);
  });

  test('completions dispatch to their contexts; tokens come back', async () => {
    const { driver, done, complete } = setup(2);
    const a = driver.tryAcquire();
    const b = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    driver.enqueue(b, [seg(512)], 'b');
    await microtask();
    complete([
      [b, 7],
      [a, 9],
    ]);
    assert.deepEqual(
      done.map((d) => [d.ctx, d.token, d.len, d.err]),
      [
        ['b', b, 7, undefined],
        ['a', a, 9, undefined],
      ],
    );
    assert.equal(driver.pending, 0);
    assert.notEqual(driver.tryAcquire(), -1);
    // A completion for a token that is not in flight is ignored (the native side checks ids too).
    complete([[a, 1]]);
    assert.equal(done.length, 2);
  });

  test('a full ring keeps the tail queued and submits it after the next completion', async () => {
    const { fake, driver, done, complete } = setup(4);
    fake.room = 2;
    const tokens = [0, 1, 2, 3].map(() => driver.tryAcquire());
    tokens.forEach((t, i) => driver.enqueue(t, [seg(i * 512)], `c${i}`));
    await microtask();
    assert.deepEqual(
      fake.submits[0]?.map((c) => c.token),
      tokens.slice(0, 2),
    );
    fake.room = 1;
    complete([[tokens[0] as number, 1]]);
    assert.deepEqual(
      fake.submits[1]?.map((c) => c.token),
      [tokens[2]],
      'the oldest queued chain goes first',
    );
    fake.room = 8;
    complete([[tokens[1] as number, 1]]);
    assert.deepEqual(
      fake.submits[2]?.map((c) => c.token),
      [tokens[3]],
    );
    assert.deepEqual(fake.submits[2]?.[0]?.segments, [seg(3 * 512)]);
    assert.equal(done.length, 2);
  });

  test('whenFree waiters run in order, one per freed token', async () => {
    const { driver, complete } = setup(1);
    const t = driver.tryAcquire();
    driver.enqueue(t, [seg(0)], 'x');
    await microtask();
    const order: number[] = [];
    driver.whenFree(() => order.push(1));
    driver.whenFree(() => order.push(2));
    complete([[t, 0]]);
    assert.deepEqual(order, [1]);
  });

  test('a broken ring fails every chain and waiter; later use throws', async () => {
    const { driver, done, complete } = setup(4);
    const a = driver.tryAcquire();
    const b = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    driver.enqueue(b, [seg(512)], 'b');
    await microtask();
    let woke = 0;
    driver.whenFree(() => woke++);
    complete([], 'used id 9 out of range');
    assert.equal(done.length, 2);
    for (const d of done) {
      assert.equal((d.err as VdpaError).code, 'EPROTO');
      assert.match((d.err as VdpaError).message, /used id 9/);
    }
    assert.ok(woke >= 1, 'waiters are woken so they can see the failure');
    assert.throws(
      () => driver.tryAcquire(),
      (e: unknown) => (e as VdpaError).code === 'EPROTO',
    );
  });

  test('a refused submit fails the chains it carried, not later ones', async () => {
    const { fake, driver, done } = setup(4);
    fake.throwOnSubmit = new RangeError('segment is not inside a live region');
    const a = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    await microtask();
    assert.equal(done.length, 1);
    assert.ok(done[0]?.err instanceof RangeError);
    fake.throwOnSubmit = undefined;
    const b = driver.tryAcquire();
    driver.enqueue(b, [seg(512)], 'b');
    await microtask();
    assert.equal(fake.submits.length, 1);
    assert.equal(driver.pending, 1);
  });

  test('chains in flight hold a reference on the native queue, unless keepAlive says no', async () => {
    const { fake, driver, complete, setKeepAlive } = setup(4);
    const a = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    assert.equal(fake.refs, 1);
    setKeepAlive(false);
    driver.updateRef();
    assert.equal(fake.refs, 0);
    setKeepAlive(true);
    driver.updateRef();
    assert.equal(fake.refs, 1);
    await microtask();
    complete([[a, 0]]);
    assert.equal(fake.refs, 0, 'an idle queue does not keep the loop alive');
  });
});

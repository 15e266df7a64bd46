// QueueDriver (lib/queue.ts) against a fake native queue: tokens, one submit per tick, partial
// acceptance when the ring is full, completion dispatch, failure, and the event-loop reference.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { vdpaError, type VdpaError } from '../../lib/errors';
import type { NativeQueue } from '../../lib/native';
import { DeadlineWheel } from '../../lib/deadline';
import { QueueDriver, TokenWaiters, type ChainSegment } from '../../lib/queue';

interface Submitted {
  token: number;
  segments: ChainSegment[];
}

/** A native queue that records what it is given; `room` chains fit before the ring is full. */
class FakeQueue implements NativeQueue {
  readonly completions: Uint32Array<ArrayBuffer>;
  readonly index = 0;
  submits: Submitted[][] = [];
  room = Infinity;
  refs = 0;
  throwOnSubmit: Error | undefined;
  constructor(readonly size: number) {
    this.completions = new Uint32Array(2 * size);
  }
  deliver(): void {}
  park(): void {}
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
  setPoll(): void {}
}

interface Done {
  ctx: string;
  token: number;
  len: number;
  err: Error | undefined;
}

function setup(size = 4, maxSegments = 1, deadline?: DeadlineWheel) {
  const fake = new FakeQueue(size);
  const done: Done[] = [];
  const orphans: { ctx: string; err: VdpaError }[] = [];
  const waiters = new TokenWaiters();
  let keepAlive = true;
  const driver = new QueueDriver<string>(fake, {
    onChain: (ctx, token, len, err) => done.push({ ctx, token, len, err }),
    onOrphan: (ctx, err) => orphans.push({ ctx, err }),
    wantRef: () => keepAlive,
    describeSubmitError: (err) => err,
    maxSegments,
    waiters,
    deadline,
  });
  /** The device returns `pairs` of [token, len], as the native completion callback would. */
  const complete = (pairs: [number, number][], brokenReason?: string): void => {
    pairs.forEach(([t, len], i) => {
      fake.completions[2 * i] = t;
      fake.completions[2 * i + 1] = len;
    });
    const broken = brokenReason === undefined ? undefined : vdpaError('EPROTO', 'virtqueue 0', 'fake', brokenReason);
    driver.complete(pairs.length, broken);
  };
  return { fake, done, orphans, waiters, driver, complete, setKeepAlive: (v: boolean) => (keepAlive = v) };
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

  test('openChain + segment queue what enqueue does, growing the batch for a long chain', async () => {
    const { fake, driver, complete, done } = setup(4, 1);
    const a = driver.tryAcquire();
    driver.enqueue(a, [seg(0), seg(512, 64, true)], 'a');
    const b = driver.tryAcquire();
    const many = Array.from({ length: 40 }, (_, i) => seg(i * 512, 512, i === 39));
    driver.openChain(b, many.length, 'b');
    for (const s of many) driver.segment(s.region, s.offset, s.length, s.writable);
    await microtask();
    assert.equal(fake.submits.length, 1);
    assert.deepEqual(fake.submits[0], [
      { token: a, segments: [seg(0), seg(512, 64, true)] },
      { token: b, segments: many },
    ]);
    assert.equal(driver.pending, 2);
    complete([[b, 7]]);
    assert.deepEqual(done, [{ ctx: 'b', token: b, len: 7, err: undefined }]);
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

  test('waiters run in order, one per freed token; an aborted one hands its turn on', async () => {
    const { driver, waiters, complete } = setup(1);
    const t = driver.tryAcquire();
    driver.enqueue(t, [seg(0)], 'x');
    await microtask();
    const order: number[] = [];
    waiters.push(() => {
      order.push(1);
      return false; // gave up (its request was aborted): the token goes to the next
    });
    waiters.push(() => {
      order.push(2);
      return driver.tryAcquire() >= 0;
    });
    waiters.push(() => {
      order.push(3);
      return true;
    });
    complete([[t, 0]]);
    assert.deepEqual(order, [1, 2]);
    assert.equal(waiters.length, 1);
  });

  test('a broken ring settles held chains at once but keeps them pinned until reset', async () => {
    const { driver, done, orphans, waiters, complete } = setup(4);
    const a = driver.tryAcquire();
    const b = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    await microtask();
    driver.enqueue(b, [seg(512)], 'queued'); // not submitted yet: released at once
    let woke = 0;
    waiters.push(() => {
      woke++;
      assert.throws(
        () => driver.tryAcquire(),
        (e: unknown) => (e as VdpaError).code === 'EPROTO',
      );
      return true;
    });
    complete([], 'used id 9 out of range');
    assert.deepEqual(
      done.map((d) => d.ctx),
      ['queued'],
      'only the chain the device never got is released',
    );
    assert.deepEqual(
      orphans.map((o) => o.ctx),
      ['a'],
    );
    assert.match(orphans[0]?.err.message ?? '', /used id 9/);
    assert.equal(woke, 1, 'waiters are woken to see the failure');
    assert.equal(driver.pending, 1, 'the held chain still counts');
    assert.throws(
      () => driver.tryAcquire(),
      (e: unknown) => (e as VdpaError).code === 'EPROTO',
    );
    driver.reset(vdpaError('ECANCELED', 'close', 'fake', 'closed'));
    assert.deepEqual(
      done.map((d) => d.ctx),
      ['queued', 'a'],
    );
    assert.equal((done[1]?.err as VdpaError).code, 'EPROTO', 'released with the first failure');
    assert.equal(driver.pending, 0);
  });

  test('a held chain the device returns after the failure is released then', async () => {
    const { driver, done, complete } = setup(2);
    const a = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    await microtask();
    driver.fail(vdpaError('ETIMEDOUT', 'request', 'fake', 'late'));
    assert.equal(done.length, 0);
    complete([[a, 5]]);
    assert.deepEqual(
      done.map((d) => [d.ctx, d.len]),
      [['a', 5]],
    );
  });

  test('a refused submit fails only the chain the native side refuses', async () => {
    const { fake, driver, done } = setup(4);
    const real = fake.submit.bind(fake);
    // Refuses any batch holding a chain on region 9, as native code refuses a dead region.
    fake.submit = (batch, count) => {
      for (let w = 0, i = 0; i < count; i++, w += 2 + 4 * (batch[w + 1] as number))
        if (batch[w + 2] === 9) throw new RangeError('chain segment is not inside a live region');
      return real(batch, count);
    };
    const a = driver.tryAcquire();
    const b = driver.tryAcquire();
    const c = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    driver.enqueue(b, [{ region: 9, offset: 0, length: 512, writable: false }], 'bad');
    driver.enqueue(c, [seg(512)], 'c');
    await microtask();
    assert.deepEqual(
      done.map((d) => d.ctx),
      ['bad'],
    );
    assert.ok(done[0]?.err instanceof RangeError);
    assert.deepEqual(
      fake.submits.map((x) => x.map((y) => y.token)),
      [[a], [c]],
      'the others go in order',
    );
    assert.equal(driver.pending, 2);
  });

  test('chains enter the deadline wheel and leave it when released', async () => {
    let expired = 0;
    const wheel = new DeadlineWheel(20, () => expired++);
    const { driver, complete } = setup(4, 1, wheel);
    const a = driver.tryAcquire();
    driver.enqueue(a, [seg(0)], 'a');
    await microtask();
    complete([[a, 0]]);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(expired, 0, 'a completed chain never expires');
    const b = driver.tryAcquire();
    driver.enqueue(b, [seg(0)], 'b');
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(expired, 1, 'a chain held past the timeout expires once');
    wheel.stop();
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

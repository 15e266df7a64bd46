// DeadlineWheel (lib/deadline.ts): one interval per device; never early, at most a few ticks late.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeadlineWheel } from '../../lib/deadline';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a request held past the timeout expires, not before it, within three ticks', async () => {
  for (const timeout of [20, 50, 130]) {
    let expiredAt = 0;
    const wheel = new DeadlineWheel(timeout, () => (expiredAt = performance.now()));
    const started = performance.now();
    wheel.enter();
    while (expiredAt === 0 && performance.now() - started < timeout * 10) await sleep(1);
    const age = expiredAt - started;
    assert.ok(expiredAt > 0, `timeout ${timeout}: never expired`);
    assert.ok(age >= timeout - 1, `timeout ${timeout}: expired after ${age.toFixed(1)} ms`);
    assert.ok(age < timeout + 3 * wheel.period + 100, `timeout ${timeout}: expired only after ${age.toFixed(1)} ms`);
  }
});

test('requests that leave in time never expire; the ticks stop when nothing is held', async () => {
  let expired = 0;
  const wheel = new DeadlineWheel(30, () => expired++);
  for (let i = 0; i < 20; i++) {
    const a = wheel.enter();
    const b = wheel.enter();
    await sleep(5);
    wheel.leave(a);
    wheel.leave(b);
  }
  await sleep(100);
  assert.equal(expired, 0);
  wheel.stop();
  wheel.enter(); // a stopped wheel never fires
  await sleep(100);
  assert.equal(expired, 0);
});

test('periods are whole milliseconds from 5 ms to 1 s, with a bounded number of slots', () => {
  for (const [timeout, period] of [
    [1, 5],
    [100, 12],
    [30_000, 1000],
    [2 ** 31 - 1, Math.floor((2 ** 31 - 1) / 1023)],
  ] as const)
    assert.equal(new DeadlineWheel(timeout, () => undefined).period, period, `timeout ${timeout}`);
});

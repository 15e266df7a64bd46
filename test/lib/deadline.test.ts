// DeadlineWheel (lib/deadline.ts): one interval per device; never early, at most a few ticks late.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeadlineWheel, type IntervalTimers } from '../../lib/deadline';

// The wheel reads no clock: it counts interval ticks. A manual interval makes those ticks exact, so
// these checks do not depend on how loaded the machine is.
class ManualTimers implements IntervalTimers {
  private fn: (() => void) | undefined;
  private period = 0;
  private due = 0;
  private now = 0;
  setInterval(fn: () => void, ms: number) {
    assert.equal(this.fn, undefined, 'one interval at a time');
    this.fn = fn;
    this.period = ms;
    this.due = this.now + ms;
    return { unref: () => undefined };
  }
  clearInterval(): void {
    this.fn = undefined;
  }
  /** Advances time by `ms`, firing the interval at each of its due times. */
  tick(ms: number): void {
    const end = this.now + ms;
    while (this.fn && this.due <= end) {
      this.now = this.due;
      this.due += this.period;
      this.fn();
    }
    this.now = end;
  }
}
test('a request held past the timeout expires, not before it, within three ticks', () => {
  for (const timeout of [20, 50, 130, 30_000]) {
    const timers = new ManualTimers();
    let expired = 0;
    const wheel = new DeadlineWheel(timeout, () => expired++, timers);
    wheel.enter();
    // An interval may fire up to one period early against the request's own clock: the wheel keeps a
    // spare slot for that, so even then nothing expires before the timeout.
    timers.tick(timeout - 1);
    assert.equal(expired, 0, `timeout ${timeout}: expired early`);
    timers.tick(3 * wheel.period + 1);
    assert.equal(expired, 1, `timeout ${timeout}: not expired within three ticks past it`);
    timers.tick(10 * timeout);
    assert.equal(expired, 1, `timeout ${timeout}: expired twice`);
  }
});

test('requests that leave in time never expire; the ticks stop when nothing is held', () => {
  const timers = new ManualTimers();
  let expired = 0;
  const wheel = new DeadlineWheel(30, () => expired++, timers);
  for (let i = 0; i < 20; i++) {
    const a = wheel.enter();
    const b = wheel.enter();
    timers.tick(5);
    wheel.leave(a);
    wheel.leave(b);
  }
  timers.tick(100);
  assert.equal(expired, 0);
  // Idle: a request entering now gets its whole timeout again.
  wheel.enter();
  timers.tick(29);
  assert.equal(expired, 0);
  timers.tick(30);
  assert.equal(expired, 1);
  const stopped = new DeadlineWheel(30, () => expired++, timers);
  stopped.stop();
  stopped.enter(); // a stopped wheel never fires
  timers.tick(1000);
  assert.equal(expired, 1);
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

// Request deadlines with one timer per device: a coarse timing wheel. A request entering notes the
// current slot; a tick every `period` ms advances the wheel, and a slot that is about to be reused
// while it still counts requests holds one at least `timeoutMs` old (the wheel has a spare slot). No clock read and no timer per
// request: entering and leaving are an array increment and decrement.

/** Smallest tick, so very short timeouts do not turn into a busy timer. */
const MIN_PERIOD_MS = 5;
/** Slots at most: for long timeouts the tick grows instead (lateness stays under 1/1024 of it). */
const MAX_SLOTS = 1025;

/** How the wheel schedules its tick (Node's timers; tests pass a manual one). */
export interface IntervalTimers {
  setInterval(fn: () => void, ms: number): { unref(): unknown };
  clearInterval(timer: { unref(): unknown }): void;
}

const NODE_TIMERS: IntervalTimers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout),
};

export class DeadlineWheel {
  /** Milliseconds between ticks; a request times out after `timeoutMs`, at most three ticks (plus loop lag) later. */
  readonly period: number;
  private readonly counts: Int32Array;
  private slot = 0;
  private active = 0;
  private timer: { unref(): unknown } | undefined;
  private stopped = false;

  constructor(
    readonly timeoutMs: number,
    private readonly onExpired: () => void,
    private readonly timers: IntervalTimers = NODE_TIMERS,
  ) {
    // About 8 ticks per timeout, at most one a second for long ones, never more than MAX_SLOTS, and
    // whole milliseconds (timers round them down). One slot more than the timeout needs, because an
    // interval may tick early by up to a period (it counts from the loop's cached time, not now).
    const period = Math.min(timeoutMs / 8, Math.max(1000, timeoutMs / (MAX_SLOTS - 2)));
    this.period = Math.max(MIN_PERIOD_MS, Math.floor(period));
    this.counts = new Int32Array(Math.ceil(timeoutMs / this.period) + 2);
  }

  /** A request is now with the device; returns the slot to hand back to {@link leave}. */
  enter(): number {
    if (this.timer === undefined && !this.stopped) {
      this.timer = this.timers.setInterval(() => this.tick(), this.period);
      this.timer.unref(); // pending requests keep the loop alive, not their deadline
    }
    this.active++;
    (this.counts[this.slot] as number)++;
    return this.slot;
  }

  /** The request that entered at `slot` is done (completed, cancelled by a reset, ...). */
  leave(slot: number): void {
    this.active--;
    (this.counts[slot] as number)--;
  }

  /** No more ticks (the device failed or closed). */
  stop(): void {
    this.stopped = true;
    this.idle();
  }

  private tick(): void {
    // The slot entered K ticks ago is reused now: what it still counts entered at least K-1 ticks ago,
    // and (K-2) periods cover timeoutMs, with a period to spare for an early tick.
    this.slot = (this.slot + 1) % this.counts.length;
    if ((this.counts[this.slot] as number) > 0) {
      this.stop();
      this.onExpired();
    } else if (this.active === 0) {
      this.idle();
    }
  }

  private idle(): void {
    if (this.timer !== undefined) this.timers.clearInterval(this.timer);
    this.timer = undefined;
  }
}

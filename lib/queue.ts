// The TypeScript side of one virtqueue: tokens, batching and completion dispatch. Requests queued in
// one tick go to native code in a single submit(); completions come back once per wake-up.
import type { DeadlineWheel } from './deadline';
import { Fifo } from './fifo';
import type { NativeQueue } from './native';
import type { VdpaError } from './errors';

/**
 * Called exactly once per chain, when its resources are free again: the device returned it (`len` =
 * bytes it wrote), it never reached the device, or the device was reset (`err` set in both cases).
 */
export type ChainCallback<C> = (ctx: C, token: number, len: number, err: Error | undefined) => void;

/**
 * Called when a chain's request must settle now with `err` although the device still holds the chain
 * (the queue failed: broken ring, timeout, DEVICE_NEEDS_RESET). Its {@link ChainCallback} follows
 * once the device returns it or is reset; until then its buffers stay pinned.
 */
export type OrphanCallback<C> = (ctx: C, err: VdpaError) => void;

/** One buffer of a chain: a range of a registered region. */
export interface ChainSegment {
  region: number;
  offset: number;
  length: number;
  writable: boolean;
}

/**
 * Callbacks waiting for a free token, oldest first; one FIFO may serve several queues (a blk device's
 * request queues share one). A waiter returns false when it gave up without using the token (its
 * request was aborted meanwhile): the next one is woken in its place.
 */
export class TokenWaiters {
  private readonly fifo = new Fifo<() => boolean>();

  get length(): number {
    return this.fifo.length;
  }

  push(fn: () => boolean): void {
    this.fifo.push(fn);
  }

  /** A token became free: runs waiters until one uses it. */
  wakeOne(): void {
    for (let fn = this.fifo.shift(); fn; fn = this.fifo.shift()) if (fn()) return;
  }

  /** Runs every waiter queued now (after a failure: each sees it and settles). */
  wakeAll(): void {
    for (const fn of this.fifo.drain()) fn();
  }
}

/** What a queue needs besides its native half; see {@link QueueDriver}. */
export interface QueueHooks<C> {
  onChain: ChainCallback<C>;
  onOrphan?: OrphanCallback<C>;
  /** Whether chains in flight should keep the event loop alive now (receive buffers don't). */
  wantRef: () => boolean;
  /** Told, whenever that is re-evaluated, whether the device holds chains of this queue. */
  busy?: (busy: boolean) => void;
  /** Adds what native code cannot know (the device path, a hint) to a refused submission. */
  describeSubmitError: (err: Error) => Error;
  /** Most segments one chain has, to size the batch buffer. */
  maxSegments: number;
  waiters: TokenWaiters;
  /** Deadlines for the chains of this queue; undefined = none (receive buffers wait for traffic). */
  deadline?: DeadlineWheel | undefined;
  /** While true, queued chains stay off the device (a DMA update waits for the device to be idle). */
  held?: () => boolean;
  /** The device no longer holds any chain of this queue. */
  drained?: () => void;
  /** Whether a DMA update waits for this queue's chains (receive buffers wait for traffic: no). */
  drainsForDma?: boolean;
  /**
   * After each batch of completions (their {@link onChain} calls): `ringEmpty` when the batch ended
   * because the used ring was empty, not because the batch was full.
   */
  onBatch?: (ringEmpty: boolean) => void;
}

const WORDS_PER_SEGMENT = 4;
const NO_SLOT = -1;

export class QueueDriver<C> {
  /** Tokens are slot numbers: at most `size` chains exist at once, in the ring or about to be. */
  readonly size: number;
  private readonly ctx: (C | undefined)[];
  /** The deadline slot of each token's chain, or NO_SLOT. */
  private readonly deadlineSlot: Int32Array;
  private readonly orphaned: Uint8Array;
  private readonly freeTokens: number[] = [];
  private batch: Uint32Array;
  private batchWords = 0;
  private batchChains = 0;
  private flushScheduled = false;
  private readonly flushTask = (): void => this.flush();
  private inFlight = 0;
  private referenced = false;
  private failure: VdpaError | undefined;
  /** Hand-over: while true, a failure only stops the queue; its chains stay for {@link takeBack}. */
  keepChainsOnFailure = false;

  constructor(
    private readonly nativeQueue: NativeQueue,
    private readonly hooks: QueueHooks<C>,
  ) {
    this.size = nativeQueue.size;
    this.ctx = new Array<C | undefined>(this.size);
    this.deadlineSlot = new Int32Array(this.size).fill(NO_SLOT);
    this.orphaned = new Uint8Array(this.size);
    for (let t = this.size - 1; t >= 0; t--) this.freeTokens.push(t);
    this.batch = new Uint32Array(this.size * (2 + WORDS_PER_SEGMENT * hooks.maxSegments));
  }

  /** @internal The native half (a native loop, lib/net-loops.ts, takes its completions for a while). */
  get native(): NativeQueue {
    return this.nativeQueue;
  }

  /** Chains the device holds or that wait for the next submit. */
  get pending(): number {
    return this.inFlight;
  }

  /** Chains the device holds (submitted, not yet returned). */
  get onDevice(): number {
    return this.inFlight - this.batchChains;
  }

  get drainsForDma(): boolean {
    return this.hooks.drainsForDma !== false;
  }

  /** The error this queue failed with, if it did. */
  get failed(): VdpaError | undefined {
    return this.failure;
  }

  /** A free token, or -1 when every slot is taken (then wait in the {@link TokenWaiters}). */
  tryAcquire(): number {
    if (this.failure) throw this.failure;
    return this.freeTokens.length > 0 ? (this.freeTokens.pop() as number) : -1;
  }

  /** Gives back a token from {@link tryAcquire} that was not used (no waiter is woken for it). */
  release(token: number): void {
    this.freeTokens.push(token);
  }

  /** Queues a chain under `token`; it is submitted with everything else queued this tick. */
  enqueue(token: number, segments: readonly ChainSegment[], ctx: C): void {
    this.openChain(token, segments.length, ctx);
    for (const s of segments) this.segment(s.region, s.offset, s.length, s.writable);
  }

  /**
   * Queues a chain under `token` as {@link enqueue} does, without a segment array: exactly `count`
   * {@link segment} calls must follow, before anything else is queued on this queue.
   */
  openChain(token: number, count: number, ctx: C): void {
    const need = 2 + WORDS_PER_SEGMENT * count;
    if (this.batchWords + need > this.batch.length) this.grow(this.batchWords + need);
    this.batch[this.batchWords++] = token;
    this.batch[this.batchWords++] = count;
    this.batchChains++;
    this.ctx[token] = ctx;
    if (this.hooks.deadline) this.deadlineSlot[token] = this.hooks.deadline.enter();
    if (this.inFlight++ === 0) this.updateRef();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  /** One buffer of the chain {@link openChain} began. */
  segment(region: number, offset: number, length: number, writable: boolean): void {
    const b = this.batch;
    const w = this.batchWords;
    b[w] = region;
    b[w + 1] = offset;
    b[w + 2] = length;
    b[w + 3] = writable ? 1 : 0;
    this.batchWords = w + WORDS_PER_SEGMENT;
  }

  /** Submits every queued chain the ring has room for; the rest stay queued for the next completion. */
  flush(): void {
    this.flushScheduled = false;
    if (this.batchChains === 0 || this.failure || this.hooks.held?.() === true) return;
    let accepted: number;
    try {
      accepted = this.nativeQueue.submit(this.batch, this.batchChains);
    } catch {
      // The native side checks a whole batch before taking any of it: one bad chain must not fail
      // the others, so submit them one at a time and fail only those refused.
      this.submitEach();
      return;
    }
    this.dropSubmitted(accepted);
  }

  /** Native completion callback: [token, len] pairs in `completions`, maybe the broken-ring error. */
  complete(count: number, broken: VdpaError | undefined): void {
    const c = this.nativeQueue.completions;
    for (let i = 0; i < count; i++) this.finish(c[2 * i] as number, c[2 * i + 1] as number, undefined);
    // Native code hands a full batch over before it drains on; a shorter one found the ring empty.
    if (broken === undefined) this.hooks.onBatch?.(count < this.size);
    if (broken !== undefined) this.fail(broken);
    if (this.batchChains > 0) this.flush();
    if (this.onDevice === 0) this.hooks.drained?.();
  }

  /**
   * The queue is unusable from now on (later use throws `err`). Chains not yet submitted are failed
   * and released; chains the device holds settle with `err` but stay pinned until {@link reset} or the
   * device returns them; waiters are woken to see the failure. Mark every queue of a device failed
   * before failing any, so no waiter can move to a queue that is still open.
   */
  fail(err: VdpaError): void {
    this.markFailed(err);
    if (this.keepChainsOnFailure) return;
    this.releaseQueued(this.failure as VdpaError);
    for (let token = 0; token < this.size; token++) {
      const ctx = this.ctx[token];
      if (ctx === undefined || this.orphaned[token]) continue;
      this.orphaned[token] = 1;
      this.hooks.onOrphan?.(ctx, this.failure as VdpaError);
    }
    this.updateRef();
    this.hooks.waiters.wakeAll();
  }

  /** Sets the failure without settling anything yet (see {@link fail}). */
  markFailed(err: VdpaError): void {
    this.failure ??= err;
  }

  /** The device was reset: nothing is in flight any more; every chain is released with `err`. */
  reset(err: VdpaError): void {
    this.fail(err);
    for (let token = 0; token < this.size; token++)
      if (this.ctx[token] !== undefined) this.finish(token, 0, this.failure as VdpaError);
  }

  /**
   * After each wake-up's completions, poll the used ring for up to `microseconds` more (the JS
   * thread spins meanwhile) before waiting for the next interrupt; 0 turns it off.
   */
  setPoll(microseconds: number): void {
    this.nativeQueue.setPoll(microseconds);
  }

  /**
   * Hand-over: every chain the device holds or that waits for a submit, forgotten here without being
   * settled (the caller re-issues them elsewhere; a late completion of one is ignored). The queue is
   * failed with `err` from now on.
   */
  takeBack(err: VdpaError): C[] {
    this.markFailed(err);
    this.batchWords = 0;
    this.batchChains = 0;
    const taken: C[] = [];
    for (let token = 0; token < this.size; token++) {
      const ctx = this.forget(token);
      if (ctx !== undefined) taken.push(ctx);
    }
    this.inFlight = 0;
    this.updateRef();
    return taken;
  }

  /** Hand-over: delivers what the used ring holds now (the device was suspended). */
  deliverNow(): void {
    this.nativeQueue.deliver();
  }

  /** Re-evaluates whether this queue keeps the event loop alive. */
  updateRef(): void {
    const busy = this.inFlight > 0 && !this.failure;
    this.hooks.busy?.(busy);
    const want = busy && this.hooks.wantRef();
    if (want === this.referenced) return;
    this.referenced = want;
    if (want) this.nativeQueue.ref();
    else this.nativeQueue.unref();
  }

  private dropSubmitted(accepted: number): void {
    if (accepted === this.batchChains) {
      this.batchWords = 0;
      this.batchChains = 0;
      return;
    }
    // Ring full (chains without indirect descriptors use several): keep the tail for later.
    let w = 0;
    for (let i = 0; i < accepted; i++) w += 2 + WORDS_PER_SEGMENT * (this.batch[w + 1] as number);
    this.batch.copyWithin(0, w, this.batchWords);
    this.batchWords -= w;
    this.batchChains -= accepted;
  }

  private submitEach(): void {
    const batch = this.batch.slice(0, this.batchWords);
    const chains = this.batchChains;
    this.batchWords = 0;
    this.batchChains = 0;
    let w = 0;
    let full = false;
    for (let i = 0; i < chains; i++) {
      const words = 2 + WORDS_PER_SEGMENT * (batch[w + 1] as number);
      const one = batch.subarray(w, w + words);
      w += words;
      if (!full && !this.failure) {
        try {
          full = this.nativeQueue.submit(one, 1) === 0;
        } catch (e) {
          this.finish(one[0] as number, 0, this.hooks.describeSubmitError(e as Error));
          continue;
        }
      }
      if (full || this.failure) {
        // Ring full (or failed meanwhile): keep it, in order, for the next flush (or the release).
        if (this.batchWords + words > this.batch.length) this.grow(this.batchWords + words);
        this.batch.set(one, this.batchWords);
        this.batchWords += words;
        this.batchChains++;
      }
    }
    if (this.failure) this.releaseQueued(this.failure);
  }

  /** Releases the chains queued in the batch but not taken by the ring. */
  private releaseQueued(err: VdpaError): void {
    const batch = this.batch.slice(0, this.batchWords);
    const chains = this.batchChains;
    this.batchWords = 0;
    this.batchChains = 0;
    let w = 0;
    for (let i = 0; i < chains; i++) {
      const token = batch[w] as number;
      w += 2 + WORDS_PER_SEGMENT * (batch[w + 1] as number);
      this.finish(token, 0, err);
    }
  }

  /** Frees `token`'s slot (context, orphan mark, deadline) and returns its context, if it had one. */
  private forget(token: number): C | undefined {
    const ctx = this.ctx[token];
    if (ctx === undefined) return undefined;
    this.ctx[token] = undefined;
    this.orphaned[token] = 0;
    const slot = this.deadlineSlot[token] as number;
    if (slot !== NO_SLOT) {
      this.deadlineSlot[token] = NO_SLOT;
      this.hooks.deadline?.leave(slot);
    }
    this.freeTokens.push(token);
    return ctx;
  }

  private finish(token: number, len: number, err: Error | undefined): void {
    const ctx = this.forget(token);
    if (ctx === undefined) return;
    if (--this.inFlight === 0) this.updateRef();
    this.hooks.onChain(ctx, token, len, err);
    if (!this.failure) this.hooks.waiters.wakeOne();
  }

  private grow(words: number): void {
    const bigger = new Uint32Array(Math.max(words, this.batch.length * 2));
    bigger.set(this.batch.subarray(0, this.batchWords));
    this.batch = bigger;
  }
}

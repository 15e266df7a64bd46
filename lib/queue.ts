// The TypeScript side of one virtqueue: tokens, batching and completion dispatch. Requests queued in
// one tick go to native code in a single submit(); completions come back once per wake-up.
import type { NativeQueue } from './native';
import { VdpaError } from './errors';

/** Called once per finished chain: `len` = bytes the device wrote, or `err` when it failed. */
export type ChainCallback<C> = (ctx: C, token: number, len: number, err: Error | undefined) => void;

/** One buffer of a chain: a range of a registered region. */
export interface ChainSegment {
  region: number;
  offset: number;
  length: number;
  writable: boolean;
}

const WORDS_PER_SEGMENT = 4;

export class QueueDriver<C> {
  /** Tokens are slot numbers: at most `size` chains exist at once, in the ring or about to be. */
  readonly size: number;
  private readonly ctx: (C | undefined)[];
  private readonly freeTokens: number[] = [];
  private readonly waiters: (() => void)[] = [];
  private batch: Uint32Array;
  private batchWords = 0;
  private batchChains = 0;
  private flushScheduled = false;
  private inFlight = 0;
  private referenced = false;
  private failure: VdpaError | undefined;

  constructor(
    private readonly nativeQueue: NativeQueue,
    private readonly onChain: ChainCallback<C>,
    private readonly wantRef: () => boolean,
    maxSegments: number,
  ) {
    this.size = nativeQueue.size;
    this.ctx = new Array<C | undefined>(this.size);
    for (let t = this.size - 1; t >= 0; t--) this.freeTokens.push(t);
    this.batch = new Uint32Array(this.size * (2 + WORDS_PER_SEGMENT * maxSegments));
  }

  /** Chains the device holds or that wait for the next submit. */
  get pending(): number {
    return this.inFlight;
  }

  /** A free token, or -1 when every slot is taken (then use {@link whenFree}). */
  tryAcquire(): number {
    if (this.failure) throw this.failure;
    return this.freeTokens.length > 0 ? (this.freeTokens.pop() as number) : -1;
  }

  /** Runs `fn` once a token may be free (FIFO). */
  whenFree(fn: () => void): void {
    this.waiters.push(fn);
  }

  /** Queues a chain under `token`; it is submitted with everything else queued this tick. */
  enqueue(token: number, segments: readonly ChainSegment[], ctx: C): void {
    const need = 2 + WORDS_PER_SEGMENT * segments.length;
    if (this.batchWords + need > this.batch.length) this.grow(this.batchWords + need);
    const b = this.batch;
    let w = this.batchWords;
    b[w++] = token;
    b[w++] = segments.length;
    for (const s of segments) {
      b[w++] = s.region;
      b[w++] = s.offset;
      b[w++] = s.length;
      b[w++] = s.writable ? 1 : 0;
    }
    this.batchWords = w;
    this.batchChains++;
    this.ctx[token] = ctx;
    if (this.inFlight++ === 0) this.updateRef();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Submits every queued chain the ring has room for; the rest stay queued for the next completion. */
  flush(): void {
    this.flushScheduled = false;
    if (this.batchChains === 0 || this.failure) return;
    let accepted: number;
    try {
      accepted = this.nativeQueue.submit(this.batch, this.batchChains);
    } catch (e) {
      // The native side checks a whole batch before taking any of it: fail just these chains.
      this.failQueued(e as Error);
      return;
    }
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

  /** Native completion callback: [token, len] pairs in `completions`, maybe the broken-ring error. */
  complete(count: number, broken: VdpaError | undefined): void {
    const c = this.nativeQueue.completions;
    for (let i = 0; i < count; i++) this.finish(c[2 * i] as number, c[2 * i + 1] as number, undefined);
    if (broken !== undefined) this.fail(broken);
    if (this.batchChains > 0) this.flush();
  }

  /** Fails every chain (in the ring or queued) and every waiter; later use throws `err`. */
  fail(err: VdpaError): void {
    if (!this.failure) this.failure = err;
    // Every chain we handed out, in the ring or still queued here, has its context in `ctx`.
    this.batchWords = 0;
    this.batchChains = 0;
    for (let token = 0; token < this.size; token++) if (this.ctx[token] !== undefined) this.finish(token, 0, err);
    const waiters = this.waiters.splice(0);
    for (const fn of waiters) fn();
  }

  /** Fails the chains queued in the batch but not taken by the ring. */
  private failQueued(err: Error): void {
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

  /** Re-evaluates whether this queue keeps the event loop alive. */
  updateRef(): void {
    const want = this.inFlight > 0 && this.wantRef();
    if (want === this.referenced) return;
    this.referenced = want;
    if (want) this.nativeQueue.ref();
    else this.nativeQueue.unref();
  }

  private finish(token: number, len: number, err: Error | undefined): void {
    const ctx = this.ctx[token];
    if (ctx === undefined) return;
    this.ctx[token] = undefined;
    this.freeTokens.push(token);
    if (--this.inFlight === 0) this.updateRef();
    this.onChain(ctx, token, len, err);
    const next = this.waiters.shift();
    if (next) next();
  }

  private grow(words: number): void {
    const bigger = new Uint32Array(Math.max(words, this.batch.length * 2));
    bigger.set(this.batch.subarray(0, this.batchWords));
    this.batch = bigger;
  }
}

// One public request (a read, a batch, a send...) and the pieces it was split into: it settles once,
// when its last piece is done, or at once when it is aborted or its device fails.
import { AbortError } from './errors';
import { checkObject } from './validate';

/** The final argument of every request method. */
export interface RequestOptions {
  /**
   * Cancels the request: it rejects at once with an `AbortError` (`code: 'ABORT_ERR'`, `cause` the
   * signal's reason). An already aborted signal rejects before anything is submitted. Virtio cannot
   * take a buffer back from the device: a part the device already holds keeps its buffer pinned
   * until the device returns it or is reset (`freeBuffer` of it throws EBUSY meanwhile; its bounce
   * buffer is not reused), and the device may still read or write a zero-copy buffer until then.
   */
  signal?: AbortSignal | undefined;
}

/** The signal in `options`, checked (TypeError for a wrong type). */
export function requestSignal(options: RequestOptions | undefined): AbortSignal | undefined {
  if (options === undefined) return undefined;
  checkObject(options, 'options');
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new TypeError('options.signal must be an AbortSignal');
  return signal;
}

export function abortError(signal: AbortSignal): AbortError {
  return new AbortError('The operation was aborted', { cause: signal.reason });
}

// Every request's Promise is made with this one executor, so making it allocates no closure: the
// executor leaves the settle functions here and the Call takes them right away.
let nextResolve: ((value: never) => void) | undefined;
let nextReject: ((err: Error) => void) | undefined;
function takeSettlers(resolve: (value: never) => void, reject: (err: Error) => void): void {
  nextResolve = resolve;
  nextReject = reject;
}

/** A request in flight; its {@link promise} resolves with `value` (a read resolves with its buffer). */
export class Call<T = void> {
  /** Settles when the request does. */
  readonly promise: Promise<T>;
  /** Pieces not done yet, plus one while the request is still being issued. */
  private remaining = 1;
  private error: Error | undefined;
  private settledFlag = false;
  private readonly resolve: (value: T) => void;
  private readonly reject: (err: Error) => void;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    signal?: AbortSignal,
    private readonly value?: T,
  ) {
    this.promise = new Promise<T>(takeSettlers);
    this.resolve = nextResolve as (value: T) => void;
    this.reject = nextReject as (err: Error) => void;
    nextResolve = nextReject = undefined;
    if (signal) {
      this.signal = signal;
      this.onAbort = () => this.failNow(abortError(signal));
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** True once the promise settled: pieces still out must not touch the caller's memory any more. */
  get settled(): boolean {
    return this.settledFlag;
  }

  /** True once a piece failed (no point issuing more) or the call settled. */
  get failing(): boolean {
    return this.error !== undefined || this.settledFlag;
  }

  addPiece(): void {
    this.remaining++;
  }

  /** One piece is done (`err` when it failed; the first error is the call's). */
  pieceDone(err: Error | undefined): void {
    if (err && !this.error) this.error = err;
    if (--this.remaining === 0) this.settle();
  }

  /** Issuing failed with `err` (the pieces already out still finish). */
  startFailed(err: Error): void {
    this.error ??= err;
  }

  /** Settles now with `err` (abort, device failure); pieces still out finish later without effect. */
  failNow(err: Error): void {
    this.error ??= err;
    this.settle();
  }

  private settle(): void {
    if (this.settledFlag) return;
    this.settledFlag = true;
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    if (this.error) this.reject(this.error);
    else this.resolve(this.value as T);
  }
}

/**
 * Runs `start` for a new call: an aborted signal rejects before it runs; what it throws fails the
 * call once the pieces it already issued are done.
 */
export function runCall(signal: AbortSignal | undefined, start: (c: Call) => void): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const c = new Call<void>(signal);
  try {
    start(c);
  } catch (e) {
    c.startFailed(e as Error);
  }
  c.pieceDone(undefined);
  return c.promise;
}

/** What the pieces of a request see of its {@link Call}, whatever it resolves with. */
export type CallHandle = Pick<
  Call<unknown>,
  'settled' | 'failing' | 'addPiece' | 'pieceDone' | 'startFailed' | 'failNow'
>;

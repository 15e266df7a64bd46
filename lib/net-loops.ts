// Native frame loops on a NetDevice's queue pairs: a forwarder between two NICs, a packet generator
// and a sink. The frames never visit JS: native/device/net_loop.cc drains, copies and reposts on the
// completion path. This file claims the queues from the NetDevice, hands them over and back.
import { abortError, requestSignal } from './call';
import { vdpaError, type VdpaError } from './errors';
import { native, type NativeNetLoop } from './native';
import type { NetDevice } from './net';
import type { QueueDriver, TokenWaiters } from './queue';
import { checkBoolean, checkInteger, checkObject } from './validate';

/** Counters of a {@link NetLoop}. */
export interface NetLoopStats {
  /** Frames the device took (generate, forward) or frames received (sink). */
  frames: number;
  /** Their bytes, Ethernet header included, virtio-net header not. */
  bytes: number;
  /** Received frames not passed on: longer than the other NIC carries, or waiting when the loop stopped. */
  drops: number;
  /** Received buffers that held no frame (a header only). */
  errors: number;
}

/** Options of every loop. */
export interface NetLoopOptions {
  /** Queue pair the loop runs on (default 0); on both devices for {@link NetDevice.forward}. */
  queue?: number;
  /**
   * Stops the loop: {@link NetLoop.done} rejects with an `AbortError` (`code: 'ABORT_ERR'`) once
   * the device returned what it held; {@link NetLoop.stats} has the counts.
   */
  signal?: AbortSignal | undefined;
}

/** Options of {@link NetDevice.forward}. */
export interface NetForwardOptions extends NetLoopOptions {
  /** Forward the other way too: frames received on the other device go out on this one. */
  bothWays?: boolean;
}

/** Options of {@link NetDevice.generate}: `size` or `frame`. */
export interface NetGenerateOptions extends NetLoopOptions {
  /**
   * Bytes per frame (14 to MTU + 14): a broadcast frame from this device's MAC, EtherType 0x88b5
   * (IEEE 802 local experimental 1), payload bytes counting up from 0.
   */
  size?: number;
  /** The frame to send (14 to MTU + 14 bytes; copied once). */
  frame?: Uint8Array;
  /** Frames in all; the loop ends by itself once the device took them. Default: until stopped. */
  count?: number;
  /** At most this many frames per second (a token bucket with 10 ms of burst). Default: no limit. */
  rate?: number;
}

/** @internal What a loop needs of one queue pair of a {@link NetDevice}. */
export interface LoopPair {
  path: string;
  rx: QueueDriver<number>;
  tx: QueueDriver<unknown>;
  txWaiters: TokenWaiters;
  rxRegion: number;
  rxSlot: number;
  mergeable: boolean;
  /** Received frames carry checksum or segmentation state a plain forward would lose. */
  rxOffloads: boolean;
  /** The virtio-net header carries a hash report (opened with `hashReport`: 20 bytes, not 12). */
  hashHeader: boolean;
  txRegion: number;
  txSlot: number;
  /** The longest frame the loop sends on this pair (a received one may carry a VLAN tag). */
  maxFrame: number;
  /** The longest frame the driver sends (MTU + 14). */
  maxSend: number;
  mac: Uint8Array;
}

/** @internal The loop side a NetDevice sees: it holds pairs, and close() ends it first. */
export interface LoopHolder {
  /** Ends the loop at once without waiting for the device (it is closing). */
  abandon(): void;
}

/** @internal What NetDevice exposes to this file. */
interface LoopHost {
  readonly queuePairs: number;
  loopPair(p: number): LoopPair;
  holdQueue(p: number, side: 'rx' | 'tx', loop: LoopHolder): void;
  releaseQueue(p: number, side: 'rx' | 'tx', loop: LoopHolder): void;
  /** A queue of pair `p` broke under the loop: the NetDevice's use of it fails with `err`. */
  loopFailed(p: number, side: 'rx' | 'tx', err: VdpaError): void;
}

const ETHERTYPE_GENERATED = 0x88b5;
const ETH_HEADER = 14;

interface Side {
  host: LoopHost;
  pair: number;
  p: LoopPair;
}

interface PathSpec {
  rx: Side | undefined;
  tx: Side | undefined;
}

/**
 * A frame loop running natively on queue pairs of one or two {@link NetDevice}s (see
 * {@link NetDevice.forward}, {@link NetDevice.generate}, {@link NetDevice.sink}). While it runs, the
 * device's own `send`/`receive` on those pairs reject with `EBUSY`; `close()` of either device stops
 * it first (then {@link done} resolves). A device that breaks the virtio rules ends it: {@link done}
 * rejects with that `EPROTO` error, and the device's queue is failed. A running loop keeps the process
 * alive. Forwarded frames go out with a plain virtio-net header (no checksum or segmentation state),
 * so the receiving side of a forward must be opened without `rxChecksum`/`rxGso`.
 */
export class NetLoop {
  /** Settles once the loop ended: with its counts, or the error that ended it. */
  readonly done: Promise<NetLoopStats>;
  private nativeLoop: NativeNetLoop | undefined;
  private final: NetLoopStats | undefined;
  private stopped = false;
  private ended = false;
  private aborted: Error | undefined;
  /** The queues the loop holds, in the order native code names them. */
  private readonly queues: { side: Side; kind: 'rx' | 'tx' }[] = [];
  private readonly tokens = new Map<Side, number[]>();
  private settle!: (err: Error | undefined) => void;
  private readonly onAbort: (() => void) | undefined;
  private readonly holder: LoopHolder = { abandon: () => this.abandonNow() };

  /** @internal Use the NetDevice methods. */
  constructor(
    private readonly paths: PathSpec[],
    private readonly generator: { frame: Uint8Array; count: number; rate: number } | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.done = new Promise<NetLoopStats>((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve(this.stats()));
    });
    for (const { rx, tx } of paths) {
      if (rx) this.queues.push({ side: rx, kind: 'rx' });
      if (tx) this.queues.push({ side: tx, kind: 'tx' });
    }
    if (signal?.aborted) {
      this.aborted = abortError(signal);
      this.end(this.aborted);
      return;
    }
    const held: typeof this.queues = [];
    try {
      for (const q of this.queues) {
        q.side.host.holdQueue(q.side.pair, q.kind, this.holder);
        held.push(q);
      }
    } catch (e) {
      for (const q of held) q.side.host.releaseQueue(q.side.pair, q.kind, this.holder);
      throw e;
    }
    // What arrives on the receive queues from now on is the loop's: it stays in the used rings until
    // the loop starts (after the transmit slots are claimed) instead of going to the NetDevice.
    for (const q of this.queues) if (q.kind === 'rx') q.side.p.rx.native.park(true);
    if (signal) {
      this.onAbort = () => {
        this.aborted ??= abortError(signal);
        this.requestStop();
      };
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
    void this.claim();
  }

  /** The counts so far (final once {@link done} settled). */
  stats(): NetLoopStats {
    if (this.final) return { ...this.final };
    const [frames, bytes, drops, errors] = this.nativeLoop?.stats() ?? [0, 0, 0, 0];
    return { frames, bytes, drops, errors };
  }

  /**
   * Stops taking frames and resolves, as {@link done} does, once the device returned every frame
   * it held. Frames received but not yet passed on count as drops.
   */
  stop(): Promise<NetLoopStats> {
    this.requestStop();
    return this.done;
  }

  private requestStop(): void {
    if (this.stopped || this.ended) return;
    this.stopped = true;
    // Not started yet (still claiming transmit slots): it ends when the claim comes back.
    this.nativeLoop?.stop(true);
  }

  private abandonNow(): void {
    if (this.ended) return;
    this.stopped = true;
    if (this.nativeLoop) this.nativeLoop.stop(false);
    // A loop still claiming ends when the claim sees the device failed.
  }

  /** Takes every transmit token of the transmit sides (frames already queued go first), then starts. */
  private async claim(): Promise<void> {
    try {
      for (const q of this.queues) if (q.kind === 'tx') this.tokens.set(q.side, await allTokens(q.side.p));
    } catch (e) {
      // Closed while claiming is a stop; an abort wins.
      return this.end(this.aborted ?? (this.stopped ? undefined : (e as Error)));
    }
    if (this.stopped) return this.end(this.aborted);
    try {
      const loop = new native.NativeNetLoop((err, which) => this.finished(err, this.queues[which]));
      for (const { rx, tx } of this.paths) {
        loop.addPath(
          rx ? rx.p.rx.native : null,
          rx?.p.rxRegion ?? 0,
          rx?.p.rxSlot ?? 0,
          rx?.p.mergeable ?? false,
          tx ? tx.p.tx.native : null,
          tx?.p.txRegion ?? 0,
          tx?.p.txSlot ?? 0,
          tx ? (rx ? tx.p.maxFrame : tx.p.maxSend) : 0,
        );
      }
      if (this.generator) loop.setGenerator(this.generator.frame, this.generator.count, this.generator.rate);
      loop.start();
      this.nativeLoop = loop;
    } catch (e) {
      return this.end(e as Error);
    }
  }

  private finished(err: VdpaError | undefined, which: { side: Side; kind: 'rx' | 'tx' } | undefined): void {
    this.final = this.stats();
    if (err && which) which.side.host.loopFailed(which.side.pair, which.kind, err);
    // Closed under the loop (ECANCELED) is a stop; an abort wins over both.
    const closing = err?.code === 'ECANCELED' || (this.stopped && !this.aborted && err === undefined);
    this.end(this.aborted ?? (closing ? undefined : err));
  }

  private end(err: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.final ??= this.stats();
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    for (const [s, tokens] of this.tokens) {
      if (s.p.tx.failed) continue;
      for (const t of tokens) s.p.tx.release(t);
      for (let i = 0; i < tokens.length; i++) s.p.txWaiters.wakeOne();
    }
    this.tokens.clear();
    for (const q of this.queues) {
      q.side.host.releaseQueue(q.side.pair, q.kind, this.holder);
      if (q.kind === 'rx') q.side.p.rx.native.park(false);
    }
    this.settle(err);
  }
}

/** Every token of `p`'s transmit queue, taken through its waiters (sends queued earlier go first). */
function allTokens(p: LoopPair): Promise<number[]> {
  const got: number[] = [];
  return new Promise((resolve, reject) => {
    const grab = (): boolean => {
      try {
        for (let t = p.tx.tryAcquire(); t >= 0; t = p.tx.tryAcquire()) got.push(t);
      } catch (e) {
        for (const t of got) p.tx.release(t);
        reject(e as Error);
        return false;
      }
      if (got.length === p.tx.size) resolve(got);
      else p.txWaiters.push(grab);
      return true;
    };
    grab();
  });
}

function loopOptions(
  host: LoopHost,
  options: NetLoopOptions | undefined,
): { pair: number; signal: AbortSignal | undefined } {
  const signal = requestSignal(options);
  const pair = options?.queue === undefined ? 0 : checkInteger(options.queue, 'options.queue', 0, host.queuePairs - 1);
  return { pair, signal };
}

function side(host: LoopHost, pair: number): Side {
  const p = host.loopPair(pair);
  // The native loops read and write the 12-byte virtio_net_hdr_v1 only.
  if (p.hashHeader) throw new TypeError(`native net loops need ${p.path} opened without hashReport`);
  return { host, pair, p };
}

/** @internal {@link NetDevice.forward}. */
export function forwardLoop(net: NetDevice, other: NetDevice, options: NetForwardOptions | undefined): NetLoop {
  const host = net as unknown as LoopHost;
  if (other === null || typeof other !== 'object' || typeof (other as unknown as LoopHost).loopPair !== 'function')
    throw new TypeError('other must be a NetDevice');
  if (other === net)
    throw new TypeError('other must be another NetDevice (a NIC forwarding to itself loops its own frames)');
  const { pair, signal } = loopOptions(host, options);
  const otherHost = other as unknown as LoopHost;
  if (pair >= otherHost.queuePairs)
    throw new RangeError(`options.queue ${pair} is past the other device's ${otherHost.queuePairs} queue pairs`);
  const bothWays = options?.bothWays === undefined ? false : checkBoolean(options.bothWays, 'options.bothWays');
  const a = side(host, pair);
  const b = side(otherHost, pair);
  for (const s of bothWays ? [a, b] : [a])
    if (s.p.rxOffloads)
      throw new TypeError(
        'forward needs a receiving device opened without rxChecksum/rxGso (their header state would be lost)',
      );
  const paths: PathSpec[] = [{ rx: a, tx: b }];
  if (bothWays) paths.push({ rx: b, tx: a });
  return new NetLoop(paths, undefined, signal);
}

/** @internal {@link NetDevice.generate}. */
export function generateLoop(net: NetDevice, options: NetGenerateOptions): NetLoop {
  const host = net as unknown as LoopHost;
  checkObject(options, 'options');
  const { pair, signal } = loopOptions(host, options);
  const s = side(host, pair);
  let frame: Uint8Array;
  if (options.frame !== undefined) {
    if (options.size !== undefined) throw new TypeError('options.size and options.frame exclude each other');
    if (!(options.frame instanceof Uint8Array)) throw new TypeError('options.frame must be a Uint8Array');
    if (options.frame.length < ETH_HEADER || options.frame.length > s.p.maxSend)
      throw new RangeError(`options.frame must be ${ETH_HEADER} to ${s.p.maxSend} bytes, got ${options.frame.length}`);
    frame = options.frame.slice();
  } else {
    if (options.size === undefined) throw new TypeError('options.size or options.frame is required');
    const size = checkInteger(options.size, 'options.size', ETH_HEADER, s.p.maxSend);
    frame = new Uint8Array(size);
    frame.fill(0xff, 0, 6);
    frame.set(s.p.mac, 6);
    frame[12] = ETHERTYPE_GENERATED >> 8;
    frame[13] = ETHERTYPE_GENERATED & 0xff;
    for (let i = ETH_HEADER; i < size; i++) frame[i] = (i - ETH_HEADER) & 0xff;
  }
  const count =
    options.count === undefined ? 0 : checkInteger(options.count, 'options.count', 1, Number.MAX_SAFE_INTEGER);
  const rate = options.rate === undefined ? 0 : checkInteger(options.rate, 'options.rate', 1, 2 ** 32 - 1);
  return new NetLoop([{ rx: undefined, tx: s }], { frame, count, rate }, signal);
}

/** @internal {@link NetDevice.sink}. */
export function sinkLoop(net: NetDevice, options: NetLoopOptions | undefined): NetLoop {
  const host = net as unknown as LoopHost;
  const { pair, signal } = loopOptions(host, options);
  return new NetLoop([{ rx: side(host, pair), tx: undefined }], undefined, signal);
}

/** @internal The EBUSY a NetDevice's own use of a pair a loop holds fails with. */
export function loopBusyError(path: string, what: string, queue: string): VdpaError {
  return vdpaError(
    'EBUSY',
    what,
    path,
    `${queue} is held by a native loop (forward/generate/sink)`,
    'stop the loop first (loop.stop())',
  );
}

import { EventEmitter } from 'node:events';
import { inspect, type InspectOptionsStylized } from 'node:util';
import { Call, abortError, requestSignal, runCall, type RequestOptions } from './call';
import { ConfigView, NET_CONFIG_SIZE, NET_HEADER_SIZE, NET_STATUS_LINK_UP, NetConfig } from './config';
import { DeviceType, Feature, NetFeature } from './constants';
import {
  COMMON_FEATURES,
  forwardDeviceEvents,
  inspectLine,
  openForDriver,
  type Device,
  type DeviceEvents,
} from './device';
import { VdpaError } from './errors';
import { Fifo } from './fifo';
import type { OpenOptions } from './options';
import { TokenWaiters, type QueueDriver } from './queue';
import { NetFrameStream, type NetFrameStreamOptions } from './streams';

/** Options for {@link openNet}. */
export interface NetOptions extends OpenOptions {
  /** Entries per queue (a power of two unless packed). Default 256, or the device's maximum if smaller. */
  queueSize?: number;
  /** Use the packed ring when the device offers it; default false. */
  packed?: boolean;
}

const HDR = NET_HEADER_SIZE;
const ETH_HEADER = 14;
const RX_QUEUE = 0;
const TX_QUEUE = 1;
/** Bytes of received frames kept for a slow reader; frames arriving past it are dropped (counted). */
const RX_BACKLOG_BYTES = 64 * 2 ** 20;

/** A frame on its way out: the call it belongs to (a send, or one of a sendBatch). */
interface TxFrame {
  call: Call;
  frame: Uint8Array;
  length: number;
}

interface Reader {
  resolve: (f: Uint8Array) => void;
  reject: (e: Error) => void;
  /** Settled already (aborted): skipped when a frame arrives. */
  done: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * A virtio-net device: send frames, receive them as an async iterator or through an object-mode
 * Duplex ({@link createFrameStream}). Frames are whole Ethernet frames without FCS (14-byte header
 * + payload, at most MTU + 14 bytes). Every request takes a final {@link RequestOptions} with an
 * AbortSignal. Emits the {@link DeviceEvents} of its {@link device}; `await using` closes it.
 */
export class NetDevice extends EventEmitter<DeviceEvents> implements AsyncDisposable {
  /** MAC address from config space (all zeroes when the device has none), as 6 bytes. */
  readonly mac: Uint8Array;
  /** The same MAC address as text: lowercase hex, colon-separated (`'52:54:00:12:34:56'`). */
  readonly macAddress: string;
  /** Largest payload; frames may be up to `mtu + 14` bytes. */
  readonly mtu: number;
  /** Entries per queue. */
  readonly queueSize: number;
  /** The underlying device (features, config space, `'timeout'` events). */
  readonly device: Device;
  /**
   * Frames dropped because nobody read them fast enough: once unread frames hold 64 MiB, each new
   * one is dropped (the oldest are kept, in order).
   */
  droppedFrames = 0;

  // Set by bringUp(), before anyone else sees the device.
  private rx!: QueueDriver<number>;
  private tx!: QueueDriver<TxFrame>;
  private readonly txWaiters = new TokenWaiters();
  private readonly rxBufs: { handle: number; bytes: Uint8Array };
  private readonly txBufs: { handle: number; bytes: Uint8Array };
  private readonly slotBytes: number;
  private readonly received = new Fifo<Uint8Array>();
  private receivedBytes = 0;
  private readonly readers = new Fifo<Reader>();
  private waitingReaders = 0;
  private failure: Error | undefined;

  /** @internal Use {@link openNet}; `f` is what the device accepted of {@link netFeatures}. */
  constructor(device: Device, options: NetOptions, f: bigint) {
    super();
    this.device = device;
    forwardDeviceEvents(device, this);
    const cfg = new ConfigView(device.readConfig(0, Math.min(device.configSize, NET_CONFIG_SIZE)));
    this.mac = f & NetFeature.MAC && cfg.has(NetConfig.mac) ? cfg.bytes(NetConfig.mac) : new Uint8Array(6);
    this.macAddress = Array.from(this.mac, (b) => b.toString(16).padStart(2, '0')).join(':');
    this.mtu = f & NetFeature.MTU && cfg.has(NetConfig.mtu) ? cfg.get(NetConfig.mtu) : 1500;
    const queueSize = device.queueSizeFor(options.queueSize, [RX_QUEUE, TX_QUEUE]);
    this.queueSize = queueSize;
    // Without MRG_RXBUF every receive buffer must hold a whole frame (and room for a VLAN tag).
    this.slotBytes = Math.ceil((HDR + ETH_HEADER + 4 + this.mtu) / 64) * 64;
    this.rxBufs = device.allocInternal(queueSize * this.slotBytes);
    this.txBufs = device.allocInternal(queueSize * this.slotBytes);
    device.onFailure(() => {
      const err = device.pendingFailure;
      if (err) this.failReaders(err);
    });
  }

  /** @internal Sets up both queues, posts the receive buffers, sets DRIVER_OK (steps on the threadpool). */
  async bringUp(): Promise<void> {
    this.rx = await this.device.createQueue<number>(RX_QUEUE, this.queueSize, {
      onChain: (_c, token, len, err) => this.receivedChain(token, len, err),
      onOrphan: (_c, err) => this.failReaders(err),
      maxSegments: 1,
      waiters: new TokenWaiters(),
      keepAlive: () => this.waitingReaders > 0,
      // Receive buffers wait for traffic: no deadline, and close() does not wait for them.
      timed: false,
    });
    this.tx = await this.device.createQueue<TxFrame>(TX_QUEUE, this.queueSize, {
      onChain: (t, _token, _len, err) => t.call.pieceDone(err),
      onOrphan: (t, err) => t.call.failNow(err),
      maxSegments: 1,
      waiters: this.txWaiters,
    });
    await this.device.start();
    for (let t = this.rx.tryAcquire(); t >= 0; t = this.rx.tryAcquire()) this.postRx(t);
  }

  /** Link status from config (true when the device does not report one). */
  get linkUp(): boolean {
    if (!(this.device.features & NetFeature.STATUS)) return true;
    const { offset, bytes } = NetConfig.status;
    const cfg = new ConfigView(this.device.readConfig(0, offset + bytes));
    return (cfg.get(NetConfig.status) & NET_STATUS_LINK_UP) !== 0;
  }

  /** Sends one frame; resolves when the device has taken it. */
  send(frame: Uint8Array, options?: RequestOptions): Promise<void> {
    return this.request(options, (c) => {
      this.checkFrame(frame);
      this.device.check('send');
      this.transmit(c, frame);
    });
  }

  /** Sends many frames with one Promise (no Promise per frame). */
  sendBatch(frames: readonly Uint8Array[], options?: RequestOptions): Promise<void> {
    return this.request(options, (c) => {
      if (!Array.isArray(frames)) throw new TypeError('frames must be an array');
      for (const f of frames) this.checkFrame(f);
      this.device.check('sendBatch');
      for (const f of frames) {
        if (c.failing) break;
        this.transmit(c, f);
      }
    });
  }

  /**
   * The next received frame (a copy). Rejects with the device's error once it failed, `'ECANCELED'`
   * when it is closed while waiting, `'EBADF'` when called on a closed device.
   */
  receive(options?: RequestOptions): Promise<Uint8Array> {
    let signal: AbortSignal | undefined;
    try {
      signal = requestSignal(options);
      if (this.device.closed) this.device.check('receive');
    } catch (e) {
      return Promise.reject(e as Error);
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<Uint8Array>((resolve, reject) => {
      const frame = this.received.shift();
      if (frame) {
        this.receivedBytes -= frame.length;
        return resolve(frame);
      }
      if (this.failure) return reject(this.failure);
      const reader: Reader = { resolve, reject, done: false, signal, onAbort: undefined };
      if (signal) {
        reader.onAbort = () => this.settleReader(reader, abortError(signal));
        signal.addEventListener('abort', reader.onAbort, { once: true });
      }
      this.readers.push(reader);
      this.waitingReaders++;
      this.updateRef();
    });
  }

  /**
   * Received frames as an async iterator. It ends when the device is closed, and throws if the
   * device fails or `options.signal` aborts. While the loop waits for a frame it keeps the process
   * alive (see {@link unref}).
   */
  async *frames(options?: RequestOptions): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      try {
        yield await this.receive(options);
      } catch (e) {
        const code = (e as VdpaError).code;
        if (e instanceof VdpaError && (code === 'ECANCELED' || code === 'EBADF')) return;
        throw e;
      }
    }
  }

  /** See {@link Device.ref}: waiting receivers and sends in flight keep the process alive. */
  ref(): this {
    this.device.ref();
    this.updateRef();
    return this;
  }

  /** See {@link Device.unref}. */
  unref(): this {
    this.device.unref();
    this.updateRef();
    return this;
  }

  /**
   * An object-mode Duplex of frames: each frame written is sent, each frame received is read. See
   * {@link NetFrameStreamOptions} for backpressure and end/destroy semantics.
   */
  createFrameStream(options?: NetFrameStreamOptions): NetFrameStream {
    return new NetFrameStream(this, options);
  }

  /** Resets the device; pending sends and receives end with code `'ECANCELED'`. */
  close(): Promise<void> {
    return this.device.close(); // waiting readers fail through the device's failure listener
  }

  /** Closes the device as {@link close} does: `await using net = await openNet(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** One line for `console.log` and `util.inspect`: identity, MAC, MTU and state. */
  [inspect.custom](_depth: number, options: InspectOptionsStylized): string {
    return inspectLine(
      'NetDevice',
      {
        path: this.device.path,
        transport: this.device.transport,
        mac: this.macAddress,
        mtu: this.mtu,
        queueSize: this.queueSize,
        droppedFrames: this.droppedFrames,
        state: this.device.state,
      },
      options,
    );
  }

  private request(options: RequestOptions | undefined, start: (c: Call) => void): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      signal = requestSignal(options);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return runCall(signal, start);
  }

  private checkFrame(frame: Uint8Array): void {
    if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array');
    if (frame.length < ETH_HEADER || frame.length > this.mtu + ETH_HEADER)
      throw new RangeError(`frame must be ${ETH_HEADER} to ${this.mtu + ETH_HEADER} bytes, got ${frame.length}`);
  }

  private transmit(c: Call, frame: Uint8Array): void {
    c.addPiece();
    this.place({ call: c, frame, length: frame.length });
  }

  /**
   * Copies the frame into a free transmit slot, or waits (FIFO) for one. Returns false when it gave
   * a free slot back unused (the frame changed since it was checked), so a waiter loop moves on.
   */
  private place(t: TxFrame): boolean {
    let token: number;
    try {
      token = this.tx.tryAcquire();
    } catch (e) {
      t.call.pieceDone(e as Error);
      return true;
    }
    if (token < 0) {
      this.txWaiters.push(() => {
        if (!t.call.settled) return this.place(t);
        t.call.pieceDone(undefined);
        return false;
      });
      return true;
    }
    // A frame still queued may have changed since it was checked (its buffer transferred or shrunk).
    if (t.frame.length !== t.length) {
      this.tx.release(token);
      t.call.pieceDone(new TypeError('the frame was detached or shrunk before it was sent'));
      return false;
    }
    const at = token * this.slotBytes;
    const bytes = this.txBufs.bytes;
    bytes.fill(0, at, at + HDR);
    bytes.set(t.frame, at + HDR);
    this.tx.enqueue(token, [{ region: this.txBufs.handle, offset: at, length: HDR + t.length, writable: false }], t);
    return true;
  }

  private postRx(token: number): void {
    this.rx.enqueue(
      token,
      [{ region: this.rxBufs.handle, offset: token * this.slotBytes, length: this.slotBytes, writable: true }],
      token,
    );
  }

  private receivedChain(token: number, len: number, err: Error | undefined): void {
    if (err) return this.failReaders(err);
    if (len > HDR) {
      const at = token * this.slotBytes;
      const frame = this.rxBufs.bytes.slice(at + HDR, at + len);
      const reader = this.nextReader();
      if (reader) this.settleReader(reader, undefined, frame);
      else if (this.receivedBytes + frame.length <= RX_BACKLOG_BYTES) {
        this.received.push(frame);
        this.receivedBytes += frame.length;
      } else this.droppedFrames++;
    }
    // The slot is free again (the token was released before this callback): post it back.
    if (this.rx.failed || this.device.closed) return;
    const t = this.rx.tryAcquire();
    if (t >= 0) this.postRx(t);
  }

  private nextReader(): Reader | undefined {
    for (let r = this.readers.shift(); r; r = this.readers.shift()) if (!r.done) return r;
    return undefined;
  }

  private settleReader(r: Reader, err: Error | undefined, frame?: Uint8Array): void {
    if (r.done) return;
    r.done = true;
    this.waitingReaders--;
    if (r.onAbort) r.signal?.removeEventListener('abort', r.onAbort);
    if (err) r.reject(err);
    else r.resolve(frame as Uint8Array);
    if (this.waitingReaders === 0) this.updateRef();
  }

  private failReaders(err: Error): void {
    this.failure ??= err;
    for (const r of this.readers.drain()) this.settleReader(r, this.failure);
    this.updateRef();
  }

  private updateRef(): void {
    // A reader waiting for a frame is like a socket reading: it keeps the loop alive unless unref'd.
    this.rx.updateRef();
  }
}

/**
 * Opens a virtio-net device and brings it up; receive buffers are posted at once.
 *
 * @example
 * const net = await openNet('mock:net');
 * await net.send(frame);
 * for await (const f of net.frames()) console.log(f.length);
 */
export async function openNet(path: string, options: NetOptions = {}): Promise<NetDevice> {
  return openForDriver(path, options, {
    type: DeviceType.net,
    what: 'a network device',
    bringUp: async (device) => {
      const net = new NetDevice(device, options, await device.negotiate(netFeatures(options)));
      await net.bringUp();
      return net;
    },
  });
}

/** The features the network driver asks for. */
function netFeatures(options: NetOptions): bigint {
  return (
    COMMON_FEATURES | NetFeature.MAC | NetFeature.STATUS | NetFeature.MTU | (options.packed ? Feature.RING_PACKED : 0n)
  );
}

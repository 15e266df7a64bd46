import { ConfigView, NET_CONFIG_SIZE, NET_HEADER_SIZE, NET_STATUS_LINK_UP, NetConfig } from './config';
import { DeviceType, Feature, NetFeature } from './constants';
import { COMMON_FEATURES, Device, type OpenOptions } from './device';
import { VdpaError, vdpaError } from './errors';
import type { QueueDriver } from './queue';

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
/** Received frames kept for a slow reader before the oldest are dropped. */
const RX_BACKLOG_MAX = 65536;

interface TxSlot {
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * A virtio-net device: send frames, receive them as an async iterator. Frames are whole Ethernet
 * frames without FCS (14-byte header + payload, at most MTU + 14 bytes).
 */
export class NetDevice {
  /** MAC address from config space (all zeroes when the device has none). */
  readonly mac: Uint8Array;
  /** Largest payload; frames may be up to `mtu + 14` bytes. */
  readonly mtu: number;
  /** Entries per queue. */
  readonly queueSize: number;
  /** The underlying device. */
  readonly device: Device;
  /** Frames dropped because nobody read them fast enough. */
  droppedFrames = 0;

  private readonly rx: QueueDriver<number>;
  private readonly tx: QueueDriver<TxSlot>;
  private readonly rxBufs: { handle: number; bytes: Uint8Array };
  private readonly txBufs: { handle: number; bytes: Uint8Array };
  private readonly slotBytes: number;
  private readonly received: Uint8Array[] = [];
  private readHead = 0;
  private readonly readers: { resolve: (f: Uint8Array | undefined) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;

  /** @internal Use {@link openNet}. */
  constructor(device: Device, options: NetOptions) {
    if (device.deviceId !== DeviceType.net) {
      throw vdpaError('ENODEV', 'open', device.path, `not a network device (virtio device id ${device.deviceId})`);
    }
    this.device = device;
    const f = device.negotiate(
      COMMON_FEATURES |
        NetFeature.MAC |
        NetFeature.STATUS |
        NetFeature.MTU |
        (options.packed ? Feature.RING_PACKED : 0n),
    );
    const cfg = new ConfigView(device.readConfig(0, Math.min(device.configSize, NET_CONFIG_SIZE)));
    this.mac = f & NetFeature.MAC && cfg.has(NetConfig.mac) ? cfg.bytes(NetConfig.mac) : new Uint8Array(6);
    this.mtu = f & NetFeature.MTU && cfg.has(NetConfig.mtu) ? cfg.get(NetConfig.mtu) : 1500;
    const queueSize = device.queueSizeFor(options.queueSize, [RX_QUEUE, TX_QUEUE]);
    this.queueSize = queueSize;
    // Without MRG_RXBUF every receive buffer must hold a whole frame (and room for a VLAN tag).
    this.slotBytes = Math.ceil((HDR + ETH_HEADER + 4 + this.mtu) / 64) * 64;
    this.rxBufs = device.allocInternal(queueSize * this.slotBytes);
    this.txBufs = device.allocInternal(queueSize * this.slotBytes);
    this.rx = device.createQueue<number>(
      RX_QUEUE,
      queueSize,
      (_c, token, len, err) => this.received_(token, len, err),
      1,
      () => this.readers.length > 0,
    );
    this.tx = device.createQueue<TxSlot>(
      TX_QUEUE,
      queueSize,
      (slot, _t, _len, err) => (err ? slot.reject(err) : slot.resolve()),
      1,
    );
    for (let t = this.rx.tryAcquire(); t >= 0; t = this.rx.tryAcquire()) this.postRx(t);
    device.start();
  }

  /** Link status from config (true when the device does not report one). */
  get linkUp(): boolean {
    if (!(this.device.features & NetFeature.STATUS)) return true;
    const { offset, bytes } = NetConfig.status;
    const cfg = new ConfigView(this.device.readConfig(0, offset + bytes));
    return (cfg.get(NetConfig.status) & NET_STATUS_LINK_UP) !== 0;
  }

  /** Sends one frame; resolves when the device has taken it. */
  send(frame: Uint8Array): Promise<void> {
    try {
      this.checkFrame(frame);
      this.device.live();
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => this.transmit(frame, { resolve, reject }));
  }

  /** Sends many frames with one Promise (no Promise per frame). */
  sendBatch(frames: readonly Uint8Array[]): Promise<void> {
    try {
      if (!Array.isArray(frames)) throw new TypeError('frames must be an array');
      for (const f of frames) this.checkFrame(f);
      this.device.live();
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      let left = frames.length;
      let error: Error | undefined;
      if (left === 0) return resolve();
      const slot: TxSlot = {
        resolve: () => {
          if (--left > 0) return;
          if (error) reject(error);
          else resolve();
        },
        reject: (e) => {
          error ??= e;
          if (--left === 0) reject(error);
        },
      };
      for (const f of frames) this.transmit(f, slot);
    });
  }

  /** The next received frame (a copy); rejects once the device closed or failed. */
  receive(): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      if (this.readHead < this.received.length) return resolve(this.takeFrame());
      if (this.failure) return reject(this.failure);
      this.readers.push({ resolve: (f) => (f ? resolve(f) : reject(this.failure)), reject });
      this.updateRef();
    });
  }

  /**
   * Received frames as an async iterator. It ends when the device is closed, and throws if the
   * device fails. While the loop waits for a frame it keeps the process alive (see {@link unref}).
   */
  async *frames(): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      try {
        yield await this.receive();
      } catch (e) {
        if ((e as VdpaError).code === 'ECANCELED') return;
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

  /** Resets the device; pending sends and receives end with code `'ECANCELED'`. */
  async close(): Promise<void> {
    await this.device.close();
    this.failReaders(vdpaError('ECANCELED', 'close', this.device.path, 'the device was closed'));
  }

  private checkFrame(frame: Uint8Array): void {
    if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array');
    if (frame.length < ETH_HEADER || frame.length > this.mtu + ETH_HEADER)
      throw new RangeError(`frame must be ${ETH_HEADER} to ${this.mtu + ETH_HEADER} bytes, got ${frame.length}`);
  }

  private transmit(frame: Uint8Array, slot: TxSlot): void {
    let token: number;
    try {
      token = this.tx.tryAcquire();
    } catch (e) {
      return slot.reject(e as Error);
    }
    if (token < 0) return this.tx.whenFree(() => this.transmit(frame, slot));
    const at = token * this.slotBytes;
    const bytes = this.txBufs.bytes;
    bytes.fill(0, at, at + HDR);
    bytes.set(frame, at + HDR);
    this.tx.enqueue(
      token,
      [{ region: this.txBufs.handle, offset: at, length: HDR + frame.length, writable: false }],
      slot,
    );
  }

  private postRx(token: number): void {
    this.rx.enqueue(
      token,
      [{ region: this.rxBufs.handle, offset: token * this.slotBytes, length: this.slotBytes, writable: true }],
      token,
    );
  }

  private received_(token: number, len: number, err: Error | undefined): void {
    if (err) return this.failReaders(err);
    if (len > HDR) {
      const at = token * this.slotBytes;
      const frame = this.rxBufs.bytes.slice(at + HDR, at + len);
      const reader = this.readers.shift();
      if (reader) reader.resolve(frame);
      else if (this.received.length - this.readHead < RX_BACKLOG_MAX) this.received.push(frame);
      else this.droppedFrames++;
      if (this.readers.length === 0) this.updateRef();
    }
    // The slot is free again (the token was released before this callback): post it back.
    if (this.device.closed) return;
    const t = this.rx.tryAcquire();
    if (t >= 0) this.postRx(t);
  }

  private takeFrame(): Uint8Array {
    const f = this.received[this.readHead] as Uint8Array;
    this.received[this.readHead++] = undefined as unknown as Uint8Array;
    if (this.readHead > 1024 && this.readHead * 2 > this.received.length) {
      this.received.splice(0, this.readHead);
      this.readHead = 0;
    }
    return f;
  }

  private failReaders(err: Error): void {
    this.failure ??= err;
    for (const r of this.readers.splice(0)) r.reject(this.failure);
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
  if (typeof path !== 'string') throw new TypeError('device path must be a string');
  const device = new Device(path, options);
  try {
    return new NetDevice(device, options);
  } catch (e) {
    await device.close();
    throw e;
  }
}

// A virtio-net device served by this process through VDUSE: native/vduse/vduse_net answers the kernel
// and moves frames on its own thread; this file checks arguments, queues the frames the driver
// transmitted for frames(), and attaches the device through the management API.
import { abortError } from './call';
import { parseMac } from './management';
import { native, type NativeAddon } from './native';
import { formatMac } from './vdpa-protocol';
import { checkBoolean, checkInteger, checkObject } from './validate';
import { VduseDevice } from './vduse-attach';

/** What {@link createVduseNet} creates. */
export interface VduseNetOptions {
  /** Name of the VDUSE device (/dev/vduse/NAME) and of the vdpa device {@link VduseNetDevice.attach} makes. */
  name: string;
  /** The MAC address in config space: `'52:54:00:12:34:57'` or 6 bytes (default `52:54:00:12:34:56`). */
  mac?: string | Uint8Array;
  /** The MTU in config space (VIRTIO_NET_F_MTU), 68 to 65535 (default 1500). */
  mtu?: number;
  /** Largest queue size the driver may choose, a power of two from 2 to 32768 (default 256). */
  queueSize?: number;
  /** The link status the driver sees first (default true); change it with {@link VduseNetDevice.setLink}. */
  linkUp?: boolean;
  /**
   * Offloads offered besides checksum offload (CSUM and GUEST_CSUM, always offered). `gso: true`
   * offers segmentation offload, HOST_TSO4, HOST_TSO6, GUEST_TSO4 and GUEST_TSO6 (default false):
   * a large TCP frame the driver sends crosses a {@link VduseNetDevice.connect} wire whole when the
   * peer's driver negotiated GUEST_TSO, and is cut into MTU-sized segments (complete checksums) by
   * this device otherwise, and always before a TAP interface or {@link VduseNetDevice.frames}.
   */
  offloads?: { gso?: boolean };
  /** @internal The control node (tests point it elsewhere). */
  controlPath?: string;
}

/**
 * Counters since the device was created. `tx`: frames the driver transmitted (what {@link
 * VduseNetDevice.frames} yields or the wire carries); `rx`: frames placed in the driver's receive
 * queue. The same directions as `ip -s link` on the kernel's netdev.
 */
export interface VduseNetStats {
  txFrames: number;
  txBytes: number;
  /** Transmitted frames that went nowhere: link down, no room in the frames() queue, malformed. */
  txDropped: number;
  rxFrames: number;
  rxBytes: number;
  /** Frames for the driver that were dropped: link down, no driver, no receive buffers for too long. */
  rxDropped: number;
  /** Transmitted frames that carried a segmentation request (with `offloads.gso`; counted in txFrames too). */
  txGsoFrames: number;
  /** Frames placed in the receive queue whole with a segmentation request (the peer's large frames). */
  rxGsoFrames: number;
  /** Segments this device cut transmitted segmentation requests into, for a peer that did not take them whole. */
  segmentsMade: number;
}

/** Options of {@link VduseNetDevice.frames}. */
export interface VduseFramesOptions {
  /** Ends the iteration (it throws an AbortError). */
  signal?: AbortSignal;
}

interface NativeVduseNet {
  readonly name: string;
  readonly maxFrame: number;
  send(frame: Uint8Array): boolean;
  connect(peer: NativeVduseNet | null): void;
  connectTap(name: string): Promise<string>;
  disconnectTap(): Promise<void>;
  setLink(up: boolean): Promise<void>;
  stats(): VduseNetStats;
  close(): Promise<void>;
}

interface VduseNetAddon {
  createVduseNet(options: Record<string, unknown>): Promise<NativeVduseNet>;
}

const addon = native as NativeAddon & VduseNetAddon;

const DEFAULT_MAC = '52:54:00:12:34:56';
const ETH_HEADER = 14;
/** Frames the driver transmitted that frames() holds for its reader, at most (past it: dropped). */
const QUEUED_FRAMES = 4096;
/** IFNAMSIZ less the NUL. */
const MAX_IFNAME = 15;

function checkOptions(options: VduseNetOptions): Record<string, unknown> {
  checkObject(options, 'options');
  const { name, mac, mtu, queueSize, linkUp, controlPath, offloads } = options;
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
  if (name.length === 0 || Buffer.byteLength(name) > 255 || /[/\0\s]/.test(name))
    throw new RangeError(`name must be 1 to 255 bytes without '/', NUL or spaces, got ${JSON.stringify(name)}`);
  const out: Record<string, unknown> = {
    name,
    mac: parseMac(mac ?? DEFAULT_MAC),
    mtu: mtu === undefined ? 1500 : checkInteger(mtu, 'mtu', 68, 65535),
    queueSize: queueSize === undefined ? 256 : checkInteger(queueSize, 'queueSize', 2, 32768),
    linkUp: linkUp === undefined ? true : checkBoolean(linkUp, 'linkUp'),
  };
  const q = out.queueSize as number;
  if ((q & (q - 1)) !== 0) throw new RangeError(`queueSize must be a power of two, got ${q}`);
  if (offloads !== undefined) {
    checkObject(offloads, 'offloads');
    if (offloads.gso !== undefined) out.gso = checkBoolean(offloads.gso, 'offloads.gso');
  }
  if (controlPath !== undefined) {
    if (typeof controlPath !== 'string') throw new TypeError('controlPath must be a string');
    out.controlPath = controlPath;
  }
  return out;
}

/**
 * A virtio-net device served by this process through VDUSE. Frames move on a native thread: the
 * driver's transmitted frames go to {@link VduseNetDevice.frames} or, once {@link
 * VduseNetDevice.connect}ed, straight to another device (or, with {@link VduseNetDevice.connectTap},
 * to a TAP interface of the host) with no JavaScript per frame. Frames for the
 * driver wait for its receive buffers (up to a ring's worth of the longest frames, 1 to 16 MiB) and are dropped, and counted, past that. No
 * control queue: VDUSE (Linux 6.12) refuses VIRTIO_NET_F_CTRL_VQ. Made by {@link createVduseNet}.
 */
export class VduseNetDevice extends VduseDevice {
  /** The MAC address in config space, `'52:54:00:12:34:57'`. */
  readonly mac: string;
  /** The MTU in config space. */
  readonly mtu: number;
  /** @internal */
  readonly handle: NativeVduseNet;
  private closed = false;
  private link: boolean;
  private readonly queued: Uint8Array[] = [];
  private queueDropped = 0;
  private readonly waiters = new Set<() => void>();

  /** @internal Use {@link createVduseNet}. */
  constructor(handle: NativeVduseNet, mac: string, mtu: number, linkUp: boolean) {
    super(handle.name);
    this.handle = handle;
    this.mac = mac;
    this.mtu = mtu;
    this.link = linkUp;
  }

  /** @internal Frames the driver transmitted, a batch per wake-up of the JS thread. */
  onFrames(batch: Uint8Array[]): void {
    for (const f of batch) {
      if (this.queued.length >= QUEUED_FRAMES) this.queueDropped++;
      else this.queued.push(f);
    }
    this.wake();
  }

  /** Frames and bytes per direction, read without waiting for the device thread. */
  get stats(): VduseNetStats {
    const s = this.handle.stats();
    return { ...s, txDropped: s.txDropped + this.queueDropped };
  }

  /** The link status the driver sees (config space). */
  get linkUp(): boolean {
    return this.link;
  }

  /**
   * Sets the link status in config space and raises the config interrupt: the kernel's netdev
   * follows (carrier), an `openNet` driver emits `'link'`. While down, frames go nowhere.
   */
  async setLink(up: boolean): Promise<void> {
    checkBoolean(up, 'up');
    this.checkOpen('setLink');
    await this.handle.setLink(up);
    this.link = up;
  }

  /**
   * Queues a frame (14 bytes up to mtu + 18: Ethernet header, payload, a VLAN tag) for the
   * driver's receive queue. Resolves once queued; a frame the device had to drop (link down, no
   * driver yet, no receive buffers) is counted in `stats.rxDropped`.
   */
  async send(frame: Uint8Array): Promise<void> {
    if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array');
    const max = this.mtu + ETH_HEADER + 4;
    if (frame.length < ETH_HEADER || frame.length > max)
      throw new RangeError(`frame must be ${ETH_HEADER} to ${max} bytes, got ${frame.length}`);
    this.checkOpen('send');
    this.handle.send(frame);
    return Promise.resolve();
  }

  /**
   * A native wire to `peer`: what this device's driver transmits arrives at `peer`'s driver and the
   * other way round, on the device threads (no JavaScript per frame). frames() then gets nothing
   * from this device. `peer` may be this device (a loopback).
   */
  connect(peer: VduseNetDevice): void {
    if (!(peer instanceof VduseNetDevice)) throw new TypeError('peer must be a VduseNetDevice');
    this.checkOpen('connect');
    peer.checkOpen('connect');
    this.handle.connect(peer.handle);
    peer.handle.connect(this.handle);
  }

  /**
   * Puts this NIC on the host's network stack: opens `/dev/net/tun` and creates the TAP interface
   * `name` (IFF_TAP, no packet information; `'tap%d'` lets the kernel number it), then moves frames
   * between it and the driver on native threads, with no JavaScript per frame. Frames the driver
   * transmits are written with complete checksums; when the interface's queue is full they are
   * dropped (`stats.txDropped`), never waited for. Frames the host sends to the interface go to the
   * driver's receive queue as {@link send} does. Resolves to the interface's name; bring it up (and
   * move it to a namespace, the fd stays valid) with `ip link`. frames() then gets nothing from this
   * device. {@link disconnect} or close() removes the interface.
   *
   * TypeError/RangeError for a name that is not 1 to 15 bytes without '/', ':' or spaces; VdpaError
   * EBUSY when this NIC is already connected or the interface is open elsewhere, EPERM/EACCES
   * without CAP_NET_ADMIN, ENOENT when /dev/net/tun is missing (`modprobe tun`), each with a hint.
   */
  async connectTap(name: string): Promise<string> {
    if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
    if (name.length === 0 || Buffer.byteLength(name) > MAX_IFNAME || /[/:\s]/.test(name))
      throw new RangeError(
        `name must be 1 to ${MAX_IFNAME} bytes without '/', ':' or spaces, got ${JSON.stringify(name)}`,
      );
    this.checkOpen('connectTap');
    return this.handle.connectTap(name);
  }

  /**
   * Cuts the wire of {@link connect} (both ends, when `peer` is given) or closes the TAP interface
   * of {@link connectTap} (it disappears before the promise resolves): transmitted frames go to
   * frames() again.
   */
  async disconnect(peer?: VduseNetDevice): Promise<void> {
    this.checkOpen('disconnect');
    this.handle.connect(null);
    if (peer && !peer.closed) peer.handle.connect(null);
    await this.handle.disconnectTap();
  }

  /**
   * The frames the driver transmitted (Ethernet frames, no virtio header), while no wire is
   * connected. Ends when the device is closed. Frames not taken wait, up to 4096, then are dropped
   * (counted in `stats.txDropped`). Several iterators share one queue.
   */
  async *frames(options: VduseFramesOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    checkObject(options, 'options');
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw new TypeError('options.signal must be an AbortSignal');
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const f = this.queued.shift();
      if (f) {
        yield f;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.waiters.add(done);
        signal?.addEventListener('abort', done);
      });
    }
  }

  /** Also cuts the wire, removes the TAP interface and ends the {@link frames} iterators. */
  protected async release(): Promise<void> {
    await this.handle.close();
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/**
 * Creates a virtio-net device served by this process through VDUSE (Linux 6.6+ for net, the `vduse`
 * module), offering MAC, MTU, STATUS, MRG_RXBUF, CSUM and GUEST_CSUM (and segmentation offload with
 * `offloads: { gso: true }`); then {@link VduseNetDevice.attach} it.
 * TypeError/RangeError for bad options; VdpaError with a hint when /dev/vduse/control is missing
 * (`modprobe vduse`), the name is taken (EEXIST) or privileges are missing (EACCES/EPERM: run as root).
 *
 * @example
 * ```ts
 * await using a = await createVduseNet({ name: 'nodenet0', mac: '52:54:00:12:34:57' });
 * await using b = await createVduseNet({ name: 'nodenet1', mac: '52:54:00:12:34:58' });
 * a.connect(b);
 * const { netdev } = await a.attach('virtio_vdpa'); // 'eth1'
 * ```
 */
export async function createVduseNet(options: VduseNetOptions): Promise<VduseNetDevice> {
  const checked = checkOptions(options);
  const holder: { device?: VduseNetDevice; early: Uint8Array[] } = { early: [] };
  checked.onFrames = (batch: Uint8Array[]): void => {
    if (holder.device) holder.device.onFrames(batch);
    else holder.early.push(...batch);
  };
  const handle = await addon.createVduseNet(checked);
  const device = new VduseNetDevice(
    handle,
    formatMac(checked.mac as Uint8Array),
    checked.mtu as number,
    checked.linkUp as boolean,
  );
  holder.device = device;
  if (holder.early.length > 0) device.onFrames(holder.early.splice(0));
  return device;
}

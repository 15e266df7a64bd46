import { EventEmitter } from 'node:events';
import { DeviceType, Feature, Status } from './constants';
import { VdpaError, vdpaError } from './errors';
import { native, type NativeDevice, type NativeOpenOptions, type NativeRegion } from './native';
import { QueueDriver, type ChainCallback } from './queue';
import { checkBoolean, checkInteger, checkObject } from './validate';
import { VhostControl } from './vhost';

/**
 * Settings of an in-process mock device (`mock:blk`, `mock:net`), in {@link OpenOptions.mock}. Each is
 * checked before the device is made: TypeError for a wrong type, RangeError for a value out of range.
 */
export interface MockOptions {
  /** mock:blk: disk size in bytes, a multiple of 512 up to 2^50. Default 64 MiB. */
  capacity?: number;
  /**
   * mock:blk: request queues the device offers (1 to 64; VIRTIO_BLK_F_MQ when above 1). Default 1.
   * How many of them a driver uses is {@link BlkOptions.numQueues}.
   */
  numQueues?: number;
  /** Largest queue size the device accepts (1 to 32768). Default 1024. */
  maxQueueSize?: number;
  /** mock:blk: max data segments per request, seg_max (1 to 4096). Default 126. */
  segMax?: number;
  /** mock:blk: max bytes per data segment, size_max (512 to 2^31). Default 1 MiB. */
  sizeMax?: number;
  /** mock:blk: logical block size reported in config (512 to 65536). Default 512. */
  blockSize?: number;
  /** mock:blk: offer VIRTIO_BLK_F_RO. Default false. */
  readOnly?: boolean;
  /** mock:net: MAC address in config, 6 bytes. Default 52:54:00:12:34:56. */
  mac?: Uint8Array;
  /** mock:net: MTU in config (68 to 65535). Default 1500. */
  mtu?: number;
  /**
   * Make the device misbehave, for testing how the library defends itself: one of {@link mockFaults}.
   * `'stall'` completes nothing after `faultAfter` completions.
   */
  fault?: string;
  /** Completions the device gets right before the fault starts (0 to 2^32-1). Default 0. */
  faultAfter?: number;
}

/** Options for {@link openDevice}; device-specific openers add their own. */
export interface OpenOptions {
  /**
   * Settings of a `mock:` device. Only mock devices take them: on any other path this is a TypeError
   * (a setting that cannot apply is a mistake, not something to ignore). Keys not listed in
   * {@link MockOptions} are a TypeError too.
   */
  mock?: MockOptions;
}

/** Fault names a mock device accepts in {@link OpenOptions.fault}. */
export const mockFaults: readonly string[] = Object.freeze([...native.mockFaults]);

/** Options for {@link Device.allocBuffer}. */
export interface AllocOptions {
  /** Back the buffer with 2 MiB huge pages when the system has them (falls back silently). */
  hugePages?: boolean;
}

/** Device specs the library knows: mock models, vhost-vdpa character devices, VFIO PCI functions. */
const KNOWN_SPEC = /^(mock:(blk|net)|\/dev\/vhost-vdpa-\d+|vfio:.+)$/;

/**
 * An open virtio device, before or after a driver has brought it up. {@link openBlk} and
 * {@link openNet} build on it; {@link openDevice} returns one for inspection and low-level use.
 *
 * Emits `'configChange'` when the device signals a configuration change, `'needsReset'` (with
 * the VdpaError its requests failed with) when it sets DEVICE_NEEDS_RESET, and `'removed'` (code
 * `'ENODEV'`) when the host takes a VFIO function back: its requests fail and the device is closed.
 */
export class Device extends EventEmitter {
  /** The spec it was opened with: `'mock:blk'`, `'/dev/vhost-vdpa-0'`, `'vfio:0000:00:03.0'`. */
  readonly path: string;
  /** `'mock'`, `'vhost-vdpa'` or `'vfio'`. */
  readonly transport: string;
  /** Virtio device ID (1 = net, 2 = blk, ...). */
  readonly deviceId: number;
  /** `'net'`, `'blk'`, or `'unknown(N)'`. */
  readonly deviceType: string;
  readonly vendorId: number;
  /** Feature bits the device offers. */
  readonly deviceFeatures: bigint;
  /** Number of virtqueues the device has. */
  readonly maxQueues: number;
  /** Bytes of device-specific configuration space. */
  readonly configSize: number;
  /** Feature bits agreed with the device (0n until a driver negotiated). */
  features = 0n;
  /** vhost-vdpa ioctls without a virtio equivalent; undefined on other transports. */
  readonly vhost: VhostControl | undefined;

  private readonly nativeDevice: NativeDevice;
  private readonly regions = new WeakMap<ArrayBuffer, NativeRegion>();
  private readonly queues: QueueDriver<unknown>[] = [];
  private readonly internalRegions: NativeRegion[] = [];
  private closedError: VdpaError | undefined;
  private cancelledWith: VdpaError | undefined;
  private referenced = true;

  /** @internal Use {@link openDevice}. */
  constructor(path: string, options: OpenOptions = {}) {
    super();
    if (typeof path !== 'string') throw new TypeError('device path must be a string');
    checkObject(options, 'options');
    if (!KNOWN_SPEC.test(path))
      throw vdpaError(
        'EINVAL',
        'open',
        path,
        'unknown device spec',
        'use mock:blk, mock:net, /dev/vhost-vdpa-N or vfio:<pci address>',
      );
    this.nativeDevice = new native.Device(path, toNativeOptions(path, options));
    const info = this.nativeDevice.info();
    this.path = path;
    this.transport = info.transport;
    this.deviceId = info.deviceId;
    this.vendorId = info.vendorId;
    this.deviceFeatures = info.deviceFeatures;
    this.maxQueues = info.maxQueues;
    this.configSize = info.configSize;
    const name = Object.entries(DeviceType).find(([, id]) => id === info.deviceId)?.[0];
    this.deviceType = name ?? `unknown(${info.deviceId})`;
    this.vhost = info.transport === 'vhost-vdpa' ? new VhostControl(() => this.live()) : undefined;
    this.nativeDevice.onConfigChange((kind) => (kind === 'removal' ? this.removed() : this.configChanged()));
  }

  /** True once {@link close} was called or the device failed for good. */
  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** The largest size queue `index` accepts (VHOST_VDPA_GET_VRING_NUM, queue_size, ...). */
  maxQueueSize(index: number): number {
    checkInteger(index, 'index', 0, this.maxQueues - 1);
    return this.live().maxQueueSize(index);
  }

  /** The device status byte (see {@link Status}). */
  status(): number {
    return this.live().status();
  }

  /** Reads `length` bytes of device configuration space at `offset`. */
  readConfig(offset: number, length: number): Uint8Array {
    checkInteger(offset, 'offset', 0, 0xffff);
    checkInteger(length, 'length', 0, 4096);
    if (offset + length > this.configSize)
      throw new RangeError(`config space is ${this.configSize} bytes; cannot read ${length} at ${offset}`);
    return this.live().readConfig(offset, length);
  }

  /** Writes bytes into device configuration space (device types that allow it). */
  writeConfig(offset: number, data: Uint8Array): void {
    checkInteger(offset, 'offset', 0, 0xffff);
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
    if (offset + data.length > this.configSize) throw new RangeError(`config space is ${this.configSize} bytes`);
    this.live().writeConfig(offset, data);
  }

  /**
   * Allocates a DMA buffer the device can reach directly: page-aligned, pinned, registered with the
   * device's IOMMU. Reads and writes through such a buffer are zero-copy. It stays valid until
   * {@link freeBuffer} or {@link close}; after that the view is detached (length 0).
   *
   * On vhost-vdpa, allocate (and free) buffers while no requests are in flight: each call is an
   * IOTLB update, and a VDUSE device answers one by re-mapping everything, dropping the buffers of
   * requests its daemon is working on.
   */
  allocBuffer(size: number, options: AllocOptions = {}): Uint8Array {
    checkInteger(size, 'size', 1, 2 ** 40);
    checkObject(options, 'options');
    if (options.hugePages !== undefined) checkBoolean(options.hugePages, 'options.hugePages');
    const region = this.live().allocRegion(size, options.hugePages === true);
    this.regions.set(region.buffer, region);
    return new Uint8Array(region.buffer, 0, size);
  }

  /** Unregisters and unmaps a buffer from {@link allocBuffer}. It must not be in use by a request. */
  freeBuffer(buffer: Uint8Array): void {
    const region = buffer instanceof Uint8Array ? this.regions.get(buffer.buffer as ArrayBuffer) : undefined;
    if (!region) throw new TypeError('buffer was not allocated by this device');
    this.regions.delete(region.buffer);
    region.free();
  }

  /** @internal Where a buffer lives in device memory, or undefined for ordinary memory. */
  dmaLocation(buffer: Uint8Array): { region: number; offset: number } | undefined {
    const region = this.regions.get(buffer.buffer as ArrayBuffer);
    return region ? { region: region.handle, offset: buffer.byteOffset } : undefined;
  }

  /** @internal Allocates memory only the library uses (headers, bounce buffers). */
  allocInternal(size: number): { handle: number; bytes: Uint8Array } {
    const region = this.live().allocRegion(size, false);
    // Held for the device's lifetime: a collected region would be unmapped under the device.
    this.internalRegions.push(region);
    return { handle: region.handle, bytes: new Uint8Array(region.buffer) };
  }

  /**
   * @internal Feature negotiation: offers `wanted` (plus VERSION_1 and ACCESS_PLATFORM) and
   * returns what the device accepted.
   */
  negotiate(wanted: bigint): bigint {
    this.features = this.live().negotiate(wanted);
    return this.features;
  }

  /**
   * @internal Sets up virtqueue `index` with `size` entries; `onChain` gets every completion.
   * `keepAlive` says whether chains in flight should keep the process alive (receive buffers don't).
   */
  createQueue<C>(
    index: number,
    size: number,
    onChain: ChainCallback<C>,
    maxSegments: number,
    keepAlive: () => boolean = () => true,
  ): QueueDriver<C> {
    // The native queue needs its callback before the driver that handles it exists.
    const handler = { driver: undefined as QueueDriver<C> | undefined };
    const nq = this.live().createQueue(index, size, (count, reason) => handler.driver?.complete(count, reason));
    const driver = new QueueDriver<C>(
      nq,
      onChain,
      () => this.referenced && keepAlive(),
      (reason) =>
        vdpaError(
          'EPROTO',
          `virtqueue ${index}`,
          this.path,
          `device broke the virtio rules: ${reason}`,
          'the device or its driver is faulty; close and reopen it',
        ),
      maxSegments,
    );
    handler.driver = driver;
    this.queues.push(driver as QueueDriver<unknown>);
    return driver;
  }

  /**
   * @internal The size for the given queues: `requested`, or 256 capped by the device. Split rings
   * need a power of two; packed rings (when negotiated) take any size.
   */
  queueSizeFor(requested: number | undefined, queues: number[]): number {
    const max = Math.min(...queues.map((q) => this.maxQueueSize(q)));
    const size = requested ?? Math.min(256, max);
    checkInteger(size, 'queueSize', 1, 32768);
    const packed = (this.features & Feature.RING_PACKED) !== 0n;
    if (size > max || (!packed && (size & (size - 1)) !== 0))
      throw new RangeError(`queueSize must be ${packed ? 'at most' : 'a power of two no larger than'} ${max}`);
    return size;
  }

  /** @internal Enables the queues and sets DRIVER_OK. */
  start(): void {
    this.live().start();
  }

  /** Lets the process exit while requests are in flight on this device. */
  unref(): this {
    this.referenced = false;
    for (const q of this.queues) q.updateRef();
    return this;
  }

  /** Undoes {@link unref}: requests in flight keep the process alive (the default). */
  ref(): this {
    this.referenced = true;
    for (const q of this.queues) q.updateRef();
    return this;
  }

  /**
   * Resets the device, fails requests still in flight (code `'ECANCELED'`), and releases its memory.
   * Buffers from {@link allocBuffer} become detached. Calling it again does nothing.
   */
  async close(): Promise<void> {
    if (this.closedError) return;
    this.shutDown(vdpaError('ECANCELED', 'close', this.path, 'the device was closed with the request in flight'));
  }

  /** @internal Throws the reason the device is unusable, if it is. */
  live(): NativeDevice {
    if (this.closedError) throw this.closedError;
    return this.nativeDevice;
  }

  /** @internal Once closed: the error requests that were pending at close fail with. */
  get cancelError(): VdpaError | undefined {
    return this.cancelledWith;
  }

  private shutDown(inFlightError: VdpaError): void {
    this.closedError = vdpaError('EBADF', 'device', this.path, 'the device is closed');
    this.cancelledWith = inFlightError;
    this.nativeDevice.close();
    for (const q of this.queues) q.fail(inFlightError);
  }

  private removed(): void {
    if (this.closedError) return;
    const err = vdpaError(
      'ENODEV',
      'vfio release request',
      this.path,
      'the host is taking the device back (unbound from vfio-pci)',
      'requests in flight were failed and the device closed so the unbind can finish',
    );
    // Closing releases the VFIO device fd, which is what the kernel is waiting for.
    this.shutDown(err);
    this.emit('removed', err);
  }

  private configChanged(): void {
    if (this.closedError) return;
    const status = this.nativeDevice.status();
    if (status & Status.DEVICE_NEEDS_RESET) {
      const err = vdpaError(
        'EIO',
        'virtio status',
        this.path,
        'the device needs a reset (DEVICE_NEEDS_RESET)',
        'close the device and open it again',
      );
      for (const q of this.queues) q.fail(err);
      this.emit('needsReset', err);
      return;
    }
    this.emit('configChange');
  }
}

const MOCK_KEYS: readonly (keyof MockOptions)[] = [
  'capacity',
  'numQueues',
  'maxQueueSize',
  'segMax',
  'sizeMax',
  'blockSize',
  'readOnly',
  'mac',
  'mtu',
  'fault',
  'faultAfter',
];

/**
 * The native layer's flat options object; ranges are the native parser's too (it checks them again).
 * Options for non-mock devices are empty: those transports take none.
 */
function toNativeOptions(path: string, options: OpenOptions): NativeOpenOptions {
  for (const key of [...MOCK_KEYS, 'deviceQueues']) {
    if (key !== 'numQueues' && key in options)
      throw new TypeError(`options.${key} is a mock device setting: pass it inside options.mock`);
  }
  const o = options.mock;
  if (o === undefined) return {};
  checkObject(o, 'options.mock');
  if (!path.startsWith('mock:')) throw new TypeError(`options.mock applies to mock: devices only, not '${path}'`);
  for (const key of Object.keys(o))
    if (!(MOCK_KEYS as readonly string[]).includes(key))
      throw new TypeError(`options.mock.${key} is not a mock setting (known: ${MOCK_KEYS.join(', ')})`);
  const n: NativeOpenOptions = {};
  if (o.capacity !== undefined) {
    checkInteger(o.capacity, 'mock.capacity', 512, 2 ** 50);
    if (o.capacity % 512 !== 0) throw new RangeError('mock.capacity must be a multiple of 512');
    n.capacity = o.capacity;
  }
  if (o.numQueues !== undefined) n.numQueues = checkInteger(o.numQueues, 'mock.numQueues', 1, 64);
  if (o.maxQueueSize !== undefined) n.maxQueueSize = checkInteger(o.maxQueueSize, 'mock.maxQueueSize', 1, 32768);
  if (o.segMax !== undefined) n.segMax = checkInteger(o.segMax, 'mock.segMax', 1, 4096);
  if (o.sizeMax !== undefined) n.sizeMax = checkInteger(o.sizeMax, 'mock.sizeMax', 512, 2 ** 31);
  if (o.blockSize !== undefined) n.blockSize = checkInteger(o.blockSize, 'mock.blockSize', 512, 65536);
  if (o.readOnly !== undefined) n.readOnly = checkBoolean(o.readOnly, 'mock.readOnly');
  if (o.mtu !== undefined) n.mtu = checkInteger(o.mtu, 'mock.mtu', 68, 65535);
  if (o.faultAfter !== undefined) n.faultAfter = checkInteger(o.faultAfter, 'mock.faultAfter', 0, 2 ** 32 - 1);
  if (o.mac !== undefined) {
    if (!(o.mac instanceof Uint8Array)) throw new TypeError('mock.mac must be a Uint8Array');
    if (o.mac.length !== 6) throw new RangeError(`mock.mac must be 6 bytes, got ${o.mac.length}`);
    n.mac = o.mac;
  }
  if (o.fault !== undefined) {
    if (typeof o.fault !== 'string') throw new TypeError('mock.fault must be a string');
    if (!mockFaults.includes(o.fault)) throw new RangeError(`mock.fault must be one of ${mockFaults.join(', ')}`);
    n.fault = o.fault;
  }
  return n;
}

/**
 * Opens a virtio device without driving it: its identity, offered features and config space.
 *
 * @param path `'mock:blk'`, `'mock:net'`, `'/dev/vhost-vdpa-N'` or `'vfio:<pci address>'`.
 */
export async function openDevice(path: string, options: OpenOptions = {}): Promise<Device> {
  return new Device(path, options);
}

/** Features every driver here asks for when the device offers them. */
export const COMMON_FEATURES = Feature.RING_EVENT_IDX | Feature.RING_INDIRECT_DESC;

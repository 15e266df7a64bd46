import { constants as bufferConstants } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import { DeviceType, Feature, Status, type DeviceTypeName } from './constants';
import { DeadlineWheel } from './deadline';
import { DmaUpdates, type MappedCallback } from './dma-updates';
import { VdpaError, vdpaError, type ErrnoCode } from './errors';
import { deviceAttributes } from './management';
import { native, type NativeCompletionCallback, type NativeDevice, type NativeRegion } from './native';
import { requestTimeoutOf, toNativeOptions, type OpenOptions } from './options';
import { QueueDriver, type QueueHooks } from './queue';
import { vdpaNameOfVhostNode } from './sysfs-devices';
import { checkBoolean, checkInteger, checkObject } from './validate';
import { VhostControl } from './vhost';

/** Options for {@link Device.allocBuffer}. */
export interface AllocOptions {
  /** Back the buffer with 2 MiB huge pages when the system has them (falls back silently). */
  hugePages?: boolean;
}

/** Longest close() waits for the chains in flight before it resets the device (VirtioDevice::kQuiesceBudget). */
const CLOSE_BUDGET_MS = 1000;

const noop = (): void => {};

/** Device specs the library knows: mock models, vhost-vdpa character devices, VFIO PCI functions. */
const KNOWN_SPEC = /^(mock:(blk|net)|\/dev\/vhost-vdpa-\d+|vfio:.+)$/;

/**
 * Largest DMA buffer: what an ArrayBuffer can be, and never above 4 GiB (chain segments carry 32-bit
 * offsets into their region).
 */
const MAX_BUFFER = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32);

/** A buffer from {@link Device.allocBuffer} and the requests holding it. */
export interface DmaRegion {
  readonly native: NativeRegion;
  /** Request pieces the device holds (or that wait to be submitted) using this buffer. */
  pins: number;
  /** Why the device refused the (deferred) mapping of this buffer, if it did. */
  mapError?: VdpaError;
}

/** Buffers freed by {@link Device.freeBuffer} on any device: passing one to a request is a TypeError. */
const freedBuffers = new WeakSet<ArrayBuffer>();

/** Queue settings a driver passes to {@link Device.createQueue}. */
export type QueueOptions<C> = Pick<QueueHooks<C>, 'onChain' | 'onOrphan' | 'onBatch' | 'maxSegments' | 'waiters'> & {
  /** Whether chains in flight should keep the process alive (receive buffers don't). Default yes. */
  keepAlive?: () => boolean;
  /** Whether the chains have a deadline (receive buffers wait for traffic: no). Default yes. */
  timed?: boolean;
};

/** The transport a device is reached through. */
export type TransportName = 'mock' | 'vhost-vdpa' | 'vfio';

const TRANSPORTS: readonly TransportName[] = ['mock', 'vhost-vdpa', 'vfio'];

/** What {@link Device.deviceType} can be: a type this library knows, or the ID of one it doesn't. */
export type DeviceTypeLabel = DeviceTypeName | `unknown(${number})`;

/**
 * The events of a {@link Device} and their arguments (BlkDevice and NetDevice emit them too). Each
 * error is a VdpaError: `'needsReset'` code `'EIO'`, `'timeout'` code `'ETIMEDOUT'`, `'removed'`
 * code `'ENODEV'`.
 */
export interface DeviceEvents {
  /** The device signalled a configuration change (read the config space again). */
  configChange: [];
  /** The device set DEVICE_NEEDS_RESET; its requests failed with this error. */
  needsReset: [error: VdpaError];
  /** A request outlived {@link OpenOptions.requestTimeout}; the device was failed with this error. */
  timeout: [error: VdpaError];
  /** The host took the VFIO function back; the device is being closed. */
  removed: [error: VdpaError];
}

/** Where a device stands: usable, failed (timeout, needs reset; close it), or closed. */
export type DeviceState = 'open' | 'failed' | 'closed';

/**
 * An open virtio device, before or after a driver has brought it up. {@link openBlk} and
 * {@link openNet} build on it; {@link openDevice} returns one for inspection and low-level use.
 *
 * Emits `'configChange'` when the device signals a configuration change, `'needsReset'` (with
 * the VdpaError its requests failed with) when it sets DEVICE_NEEDS_RESET, `'timeout'` (code
 * `'ETIMEDOUT'`) when a request outlived {@link OpenOptions.requestTimeout} and the device was
 * failed, and `'removed'` (code `'ENODEV'`) when the host takes a VFIO function back: the device
 * is closed as by {@link Device.close} (what it returns meanwhile completes, what it still holds
 * then fails), and every later call fails with `'ENODEV'`.
 */
export class Device extends EventEmitter<DeviceEvents> implements AsyncDisposable {
  /** The spec it was opened with: `'mock:blk'`, `'/dev/vhost-vdpa-0'`, `'vfio:0000:00:03.0'`. */
  readonly path: string;
  /** `'mock'`, `'vhost-vdpa'` or `'vfio'`. */
  readonly transport: TransportName;
  /** Virtio device ID (see {@link DeviceType}). */
  readonly deviceId: number;
  /** `'net'`, `'blk'`, or `'unknown(N)'`. */
  readonly deviceType: DeviceTypeLabel;
  readonly vendorId: number;
  /** Feature bits the device offers. */
  readonly deviceFeatures: bigint;
  /**
   * Number of virtqueues the device has; read again once features are negotiated, as a device may
   * add queues for what the driver accepted (QEMU's virtio-net-pci does for VIRTIO_NET_F_MQ).
   */
  get maxQueues(): number {
    return this.queueCount;
  }
  private queueCount: number;
  /** Bytes of device-specific configuration space. */
  readonly configSize: number;
  /** Feature bits agreed with the device (0n until a driver negotiated). */
  features = 0n;
  /** vhost-vdpa ioctls without a virtio equivalent; undefined on other transports. */
  readonly vhost: VhostControl | undefined;
  /** Milliseconds a request may take before the device is failed (0 = no deadline). */
  readonly requestTimeout: number;

  private readonly nativeDevice: NativeDevice;
  private readonly regions = new WeakMap<ArrayBuffer, DmaRegion>();
  private readonly queues: QueueDriver<unknown>[] = [];
  private readonly internalRegions: NativeRegion[] = [];
  private readonly deadline: DeadlineWheel | undefined;
  /**
   * What native code calls back into, cleared at close: the native side holds these callbacks in
   * persistent references, and a callback closing over the device would keep it from being collected.
   */
  private readonly relays: DeviceRelays;
  private readonly failureListeners: (() => void)[] = [];
  private isClosed = false;
  /** The one close (or host removal) in progress or done: close() returns it again. */
  private closing: Promise<void> | undefined;
  /** The bring-up step running on the threadpool, if any: the native device refuses calls meanwhile. */
  private step: Promise<unknown> | undefined;
  /** Queues whose chains close() waits for (receive queues are left out: their buffers wait for traffic). */
  private readonly awaitedQueues: number[] = [];
  private cancelledWith: VdpaError | undefined;
  private failedWith: VdpaError | undefined;
  /** Set when the host took the device back: later calls fail with ENODEV, not EBADF. */
  private removedWith: VdpaError | undefined;
  private referenced = true;
  /** Made at the first buffer allocated or freed after open. */
  private dmaUpdates: DmaUpdates | undefined;
  /** Hand-over (lib/handover.ts): queued chains stay off the device while set. */
  private handOverHold = false;
  /** Hand-over: told whenever a queue's device-held chains drop to zero. */
  private onIdle: (() => void) | undefined;

  /** @internal Use {@link openDevice}. `vendorId` replaces what the transport reports (vhost-vdpa: 0). */
  constructor(path: string, nativeDevice: NativeDevice, requestTimeout: number, vendorId?: number) {
    super();
    this.requestTimeout = requestTimeout;
    this.nativeDevice = nativeDevice;
    const info = this.nativeDevice.info();
    this.path = path;
    if (!(TRANSPORTS as readonly string[]).includes(info.transport))
      throw new TypeError(`the addon reported an unknown transport '${info.transport}'`);
    this.transport = info.transport as TransportName;
    this.deviceId = info.deviceId;
    this.vendorId = vendorId ?? info.vendorId;
    this.deviceFeatures = info.deviceFeatures;
    this.queueCount = info.maxQueues;
    this.configSize = info.configSize;
    const name = (Object.keys(DeviceType) as DeviceTypeName[]).find((n) => DeviceType[n] === info.deviceId);
    this.deviceType = name ?? `unknown(${info.deviceId})`;
    const nativeVhost = this.nativeDevice.vhost();
    this.vhost = nativeVhost ? new VhostControl(() => (this.live('vhost'), nativeVhost)) : undefined;
    // Its timer runs only while requests are in flight, and stops at close().
    // The wheel's interval outlives the last request by up to a tick: it must not pin the device.
    if (this.requestTimeout > 0) this.deadline = new DeadlineWheel(this.requestTimeout, expiryRelay(new WeakRef(this)));
    this.relays = { device: new WeakRef(this), queues: [] };
    this.nativeDevice.onConfigChange(configRelay(this.relays));
  }

  /** True once {@link close} was called or the host took the device back. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** `'open'`, `'failed'` (a request timed out or the device needs a reset: close it) or `'closed'`. */
  get state(): DeviceState {
    if (this.isClosed) return 'closed';
    return this.failedWith ? 'failed' : 'open';
  }

  /** The largest size queue `index` accepts (VHOST_VDPA_GET_VRING_NUM, queue_size, ...). */
  maxQueueSize(index: number): number {
    checkInteger(index, 'index', 0, this.maxQueues - 1);
    return this.live('maxQueueSize').maxQueueSize(index);
  }

  /** The device status byte (see {@link Status}). */
  status(): number {
    return this.live('status').status();
  }

  /** Reads `length` bytes of device configuration space at `offset`. */
  readConfig(offset: number, length: number): Uint8Array {
    checkInteger(offset, 'offset', 0, 0xffff);
    checkInteger(length, 'length', 0, 4096);
    if (offset + length > this.configSize)
      throw new RangeError(`config space is ${this.configSize} bytes; cannot read ${length} at ${offset}`);
    return this.live('readConfig').readConfig(offset, length);
  }

  /** Writes bytes into device configuration space (device types that allow it). */
  writeConfig(offset: number, data: Uint8Array): void {
    checkInteger(offset, 'offset', 0, 0xffff);
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
    if (offset + data.length > this.configSize) throw new RangeError(`config space is ${this.configSize} bytes`);
    this.live('writeConfig').writeConfig(offset, data);
  }

  /**
   * Allocates a DMA buffer the device can reach directly: page-aligned, pinned, registered with the
   * device's IOMMU, at most 4 GiB (and what an ArrayBuffer may be). Reads and writes through such a
   * buffer are zero-copy. It stays valid until {@link freeBuffer} or {@link close}; after that the
   * view is detached (length 0).
   *
   * Safe at any time, also with requests in flight. On vhost-vdpa the registration (an IOTLB update)
   * must not race I/O — a VDUSE daemon drops the mappings of the requests it is working on — so it
   * happens after this call returns: new requests wait while the device finishes those it holds
   * (at most {@link OpenOptions.requestTimeout}), the updates made meanwhile are applied in one
   * batch off the JS thread, and the waiting requests go out. Should the device refuse the mapping,
   * requests using the buffer reject with its error. Elsewhere the buffer is registered at once.
   */
  allocBuffer(size: number, options: AllocOptions = {}): Uint8Array {
    checkInteger(size, 'size', 1, MAX_BUFFER);
    checkObject(options, 'options');
    if (options.hugePages !== undefined) checkBoolean(options.hugePages, 'options.hugePages');
    const region = this.live('allocBuffer').allocRegion(size, options.hugePages === true);
    const entry: DmaRegion = { native: region, pins: 0 };
    this.regions.set(region.buffer, entry);
    this.dma.changed(region.handle, region.pending, (err) => (entry.mapError = err));
    return new Uint8Array(region.buffer, 0, size);
  }

  /**
   * Unregisters and unmaps a buffer from {@link allocBuffer}; its views become detached. A buffer a
   * request holds is refused with a VdpaError `code: 'EBUSY'`: wait for the request to settle (an
   * aborted or timed-out request holds it until the device returns it or {@link close}). Safe with
   * other requests in flight: on vhost-vdpa the unmap is deferred as {@link allocBuffer} describes.
   */
  freeBuffer(buffer: Uint8Array): void {
    const entry = buffer instanceof Uint8Array ? this.regions.get(buffer.buffer as ArrayBuffer) : undefined;
    if (!entry) throw new TypeError('buffer was not allocated by this device (or was freed already)');
    if (entry.pins > 0)
      throw vdpaError(
        'EBUSY',
        'freeBuffer',
        this.path,
        `the buffer is in use by ${entry.pins} request${entry.pins === 1 ? '' : 's'}`,
        'free it once its requests have settled; an aborted or timed-out request holds it until the device returns it or close()',
      );
    this.regions.delete(entry.native.buffer);
    freedBuffers.add(entry.native.buffer);
    entry.native.free();
    this.dma.changed(entry.native.handle, false);
  }

  /**
   * @internal Where a buffer lives in device memory, or undefined for ordinary memory. A buffer
   * freed by freeBuffer (on any device) is a TypeError.
   */
  dmaLocation(buffer: Uint8Array): { region: DmaRegion; offset: number } | undefined {
    const ab = buffer.buffer as ArrayBuffer;
    const region = this.regions.get(ab);
    if (region?.mapError) throw region.mapError;
    if (region) return { region, offset: buffer.byteOffset };
    if (freedBuffers.has(ab)) throw new TypeError('buffer was freed with freeBuffer() and cannot be used');
    return undefined;
  }

  /**
   * @internal Allocates memory only the library uses (headers, bounce buffers). `pending`: its
   * mapping is deferred (see {@link allocBuffer}); `onMapped` runs once it was applied or refused.
   */
  allocInternal(size: number, onMapped?: MappedCallback): { handle: number; bytes: Uint8Array; pending: boolean } {
    const region = this.live('allocBuffer').allocRegion(size, false);
    // Held for the device's lifetime: a collected region would be unmapped under the device.
    this.internalRegions.push(region);
    if (region.pending) this.dma.changed(region.handle, true, onMapped);
    return { handle: region.handle, bytes: new Uint8Array(region.buffer), pending: region.pending };
  }

  /** Where deferred DMA updates are coordinated with the queues. */
  private get dma(): DmaUpdates {
    this.dmaUpdates ??= new DmaUpdates(this.nativeDevice, this.queues);
    return this.dmaUpdates;
  }

  /**
   * @internal Feature negotiation: offers `wanted` (plus VERSION_1 and ACCESS_PLATFORM) and
   * returns what the device accepted.
   */
  async negotiate(wanted: bigint): Promise<bigint> {
    this.features = await this.runStep(this.live('negotiate').negotiate(wanted));
    this.queueCount = this.live('negotiate').info().maxQueues;
    return this.features;
  }

  /** @internal Sets up virtqueue `index` with `size` entries (its ioctls on the threadpool). */
  async createQueue<C>(index: number, size: number, options: QueueOptions<C>): Promise<QueueDriver<C>> {
    // The native queue needs its callback before the driver that handles it exists.
    const relay: QueueRelay = { strong: undefined, weak: undefined };
    const nq = await this.runStep(this.live('createQueue').createQueue(index, size, completionRelay(relay)));
    const keepAlive = options.keepAlive ?? (() => true);
    const driver = new QueueDriver<C>(nq, {
      onChain: options.onChain,
      onOrphan: options.onOrphan,
      onBatch: options.onBatch,
      maxSegments: options.maxSegments,
      waiters: options.waiters,
      deadline: options.timed === false ? undefined : this.deadline,
      held: () => this.dmaUpdates?.holding === true || this.handOverHold,
      drained: () => {
        this.dmaUpdates?.drained();
        this.onIdle?.();
      },
      drainsForDma: options.timed !== false,
      wantRef: () => this.referenced && keepAlive(),
      // Chains the device must return pin the driver (and so this device) through the relay that
      // native code calls; receive buffers and an idle queue do not (see QueueRelay).
      busy: (busy) => (relay.strong = busy && keepAlive() ? relay.weak?.deref() : undefined),
      describeSubmitError: (err) => this.describeSubmitError(err),
    });
    relay.weak = new WeakRef(driver as QueueDriver<unknown>);
    this.relays.queues.push(relay);
    this.queues.push(driver as QueueDriver<unknown>);
    if (options.timed !== false) this.awaitedQueues.push(index);
    // Closed meanwhile (a removal): the close has already failed the other queues.
    if (this.cancelledWith) driver.markFailed(this.cancelledWith);
    return driver;
  }

  /**
   * @internal The size for the given queues: `requested`, or 256 capped by the device. Split rings
   * need a power of two; packed rings (when negotiated) take any size.
   */
  queueSizeFor(requested: number | undefined, queues: number[]): number {
    const max = Math.min(...queues.map((q) => this.maxQueueSize(q)));
    const size = requested ?? Math.min(256, max);
    const packed = (this.features & Feature.RING_PACKED) !== 0n;
    checkQueueSizeOption(size, packed);
    if (size > max || (!packed && (size & (size - 1)) !== 0))
      throw new RangeError(`queueSize must be ${packed ? 'at most' : 'a power of two no larger than'} ${max}`);
    return size;
  }

  /** @internal Enables the queues and sets DRIVER_OK (on the threadpool). */
  async start(): Promise<void> {
    await this.runStep(this.live('start').start());
  }

  /** Tracks a bring-up step: close() and config events wait for it (the native device refuses calls). */
  private async runStep<T>(p: Promise<T>): Promise<T> {
    this.step = p;
    try {
      return await p;
    } finally {
      this.step = undefined;
    }
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
   * Closes the device without blocking the event loop: new requests are refused at once (EBADF);
   * chains the device holds get up to 1 s (or {@link requestTimeout} when shorter) to come back,
   * and those that do are delivered as successes; receive buffers of a net device are not waited
   * for. Then the device is reset, what is still in flight fails with code `'ECANCELED'`, and its
   * memory is unmapped: buffers from {@link allocBuffer} become detached. The promise resolves once
   * that is done; calling close() again returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown(
      vdpaError('ECANCELED', 'close', this.path, 'the device was closed with the request in flight'),
    );
    return this.closing;
  }

  /** Closes the device as {@link close} does: `await using dev = await openDevice(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal One line for `console.log` and `util.inspect`: identity and state, none of the internals. */
  [inspect.custom](_depth: number, options: InspectStyling): string {
    return inspectLine(
      'Device',
      {
        path: this.path,
        transport: this.transport,
        deviceType: this.deviceType,
        features: this.features,
        maxQueues: this.maxQueues,
        state: this.state,
      },
      options,
    );
  }

  /**
   * @internal The native device, or a fresh EBADF (with the caller's stack, `syscall` naming the
   * call) once the device is closed.
   */
  live(syscall: string): NativeDevice {
    if (this.isClosed) throw this.closedError(syscall, Device.prototype.live);
    return this.nativeDevice;
  }

  /** @internal Like {@link live}, and also throws the error the device failed with (timeout, reset). */
  check(syscall: string): void {
    if (this.isClosed) throw this.closedError(syscall, Device.prototype.check);
    if (this.failedWith) throw this.failedWith;
  }

  /** A new EBADF whose stack starts at the caller of `above` (the library's own frames left out). */
  private closedError(syscall: string, above: (syscall: string) => unknown): VdpaError {
    const err = this.removedWith
      ? vdpaError('ENODEV', syscall, this.path, REMOVED_REASON, REMOVED_HINT)
      : vdpaError('EBADF', syscall, this.path, 'the device is closed');
    Error.captureStackTrace(err, above);
    return err;
  }

  /** @internal What a request still waiting for resources fails with: the close or failure error. */
  get pendingFailure(): VdpaError | undefined {
    return this.cancelledWith ?? this.failedWith;
  }

  /** @internal Runs `fn` after the device failed or closed (its queues are failed by then). */
  onFailure(fn: () => void): void {
    this.failureListeners.push(fn);
  }

  private describeSubmitError(err: Error): Error {
    if (!(err instanceof VdpaError) || err.path !== undefined) return err;
    const hint =
      err.code === 'E2BIG'
        ? 'the request needs more buffers than the queue holds: open it with a larger queueSize'
        : undefined;
    const detail = err.hint ?? err.message;
    return vdpaError(err.code as ErrnoCode, err.syscall, this.path, detail, hint);
  }

  /** Fails every queue with `err`: all are marked first, so no waiter moves to one still open. */
  private failQueues(err: VdpaError, reset: boolean): void {
    this.dmaUpdates?.stop(err);
    for (const q of this.queues) q.markFailed(err);
    for (const q of this.queues) {
      if (reset) q.reset(err);
      else q.fail(err);
    }
    for (const fn of this.failureListeners) fn();
  }

  /**
   * The one close. Queues are marked failed first: nothing new is submitted, while completions
   * keep being delivered as successes until the native close (on the threadpool) has reset the
   * device; then what is left fails with `inFlightError`.
   */
  private async shutDown(inFlightError: VdpaError, budgetMs?: number): Promise<void> {
    this.isClosed = true;
    this.cancelledWith = inFlightError;
    this.deadline?.stop();
    for (const q of this.queues) q.markFailed(inFlightError);
    try {
      if (this.step) await this.step.then(noop, noop);
      const budget =
        budgetMs ?? (this.requestTimeout > 0 ? Math.min(this.requestTimeout, CLOSE_BUDGET_MS) : CLOSE_BUDGET_MS);
      await this.nativeDevice.close(this.awaitedQueues, budget);
    } finally {
      this.failQueues(inFlightError, true);
      this.relays.device = undefined;
      for (const r of this.relays.queues) r.strong = r.weak = undefined;
    }
  }

  // ---- hand-over (lib/handover.ts): this device takes over from another one, or gives way to one.

  /** @internal The queues of this device, as its driver created them. */
  get queueDrivers(): readonly QueueDriver<unknown>[] {
    return this.queues;
  }

  /** @internal While `hold`, queued chains stay off the device; releasing the hold submits them. */
  holdForHandOver(hold: boolean): void {
    this.handOverHold = hold;
    if (!hold) for (const q of this.queues) q.flush();
  }

  /**
   * @internal Resolves true once no queue whose chains close() waits for has one on the device
   * (receive queues are not waited for), false after `ms` or when `stop` resolves first.
   */
  async waitIdle(ms: number, stop: Promise<unknown>): Promise<boolean> {
    const idle = (): boolean => this.queues.every((q) => !q.drainsForDma || q.onDevice === 0);
    if (idle()) return true;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        new Promise<boolean>((resolve) => (this.onIdle = () => idle() && resolve(true))),
        new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false))),
        stop.then(() => false),
      ]);
    } finally {
      this.onIdle = undefined;
      clearTimeout(timer);
    }
  }

  /** @internal Whether the transport offers suspend (vhost-vdpa's VHOST_BACKEND_F_SUSPEND). */
  canSuspend(): boolean {
    return this.live('suspend').canSuspend();
  }

  /** @internal Suspends the device (on the threadpool), then delivers what its used rings hold. */
  async suspend(): Promise<void> {
    await this.runStep(this.live('suspend').suspend());
    for (const q of this.queues) q.deliverNow();
  }

  /** @internal This device, just opened, draws region handles from `from`'s handle space. */
  shareHandlesWith(from: Device): void {
    this.live('hand-over').shareHandles(from.live('hand-over'));
  }

  /**
   * @internal Registers `from`'s live regions (except the handles in `skip`) on this device under the
   * same handles: its buffers from allocBuffer become this device's too, its other regions are held.
   * Regions whose mapping is deferred (a started vhost-vdpa device) are mapped before the next submit.
   */
  adoptRegionsOf(from: Device, skip: number[]): void {
    for (const { region, pending } of this.live('hand-over').adoptRegions(from.live('hand-over'), skip)) {
      const entry = from.regions.get(region.buffer);
      if (entry) this.regions.set(region.buffer, entry);
      else this.internalRegions.push(region);
      if (pending) this.dma.changed(region.handle, true, (err) => entry && (entry.mapError = err));
    }
  }

  /** @internal The adopted regions are this device's now: `from`'s close leaves their buffers alone. */
  commitAdoption(from: Device): void {
    this.live('hand-over').commitAdoption(from.live('hand-over'));
  }

  /** @internal Closes at once, waiting for no chain (the hand-over took them back first). */
  closeForHandOver(): Promise<void> {
    this.closing ??= this.shutDown(
      vdpaError('ECANCELED', 'close', this.path, 'the device was closed by a hand-over with the request in flight'),
      0,
    );
    return this.closing;
  }

  /** @internal The deadline wheel's expiry: a request outlived requestTimeout. */
  deadlineExpired(): void {
    if (this.isClosed || this.failedWith) return;
    const err = vdpaError(
      'ETIMEDOUT',
      'request',
      this.path,
      `the device did not complete a request within ${this.requestTimeout} ms (requestTimeout)`,
      'the device (or its daemon) stopped answering: close() it and open it again',
    );
    this.failedWith = err;
    this.failQueues(err, false);
    this.emit('timeout', err);
  }

  /** @internal The native config-change callback, through the relay. */
  configEvent(kind: 'config' | 'removal'): void {
    // The native device refuses calls while a bring-up step runs: look once it is done.
    if (this.step) {
      const again = (): void => this.configEvent(kind);
      void this.step.then(again, again);
      return;
    }
    if (kind === 'removal') this.removed();
    else this.configChanged();
  }

  private removed(): void {
    if (this.isClosed) return;
    const err = vdpaError('ENODEV', 'vfio release request', this.path, REMOVED_REASON, REMOVED_HINT);
    this.removedWith = err;
    // Closing releases the VFIO device fd, which is what the kernel is waiting for.
    this.closing = this.shutDown(err);
    this.closing.catch(noop); // a close() caller sees a failure; the removal itself has nobody to tell
    this.emit('removed', err);
  }

  private configChanged(): void {
    if (this.isClosed) return;
    const status = this.nativeDevice.status();
    if (status & Status.DEVICE_NEEDS_RESET) {
      if (this.failedWith) return;
      const err = vdpaError(
        'EIO',
        'virtio status',
        this.path,
        'the device needs a reset (DEVICE_NEEDS_RESET)',
        'close the device and open it again',
      );
      this.failedWith = err;
      this.deadline?.stop();
      this.failQueues(err, false);
      this.emit('needsReset', err);
      return;
    }
    this.emit('configChange');
  }
}

/** @internal Re-emits the device's events on the driver object around it (BlkDevice, NetDevice). */
export function forwardDeviceEvents(device: Device, target: EventEmitter<DeviceEvents>): () => void {
  const configChange = (): boolean => target.emit('configChange');
  const needsReset = (err: VdpaError): boolean => target.emit('needsReset', err);
  const timeout = (err: VdpaError): boolean => target.emit('timeout', err);
  const removed = (err: VdpaError): boolean => target.emit('removed', err);
  device.on('configChange', configChange);
  device.on('needsReset', needsReset);
  device.on('timeout', timeout);
  device.on('removed', removed);
  // Undone by a hand-over: the device it leaves reports nothing more.
  return () => {
    device.off('configChange', configChange);
    device.off('needsReset', needsReset);
    device.off('timeout', timeout);
    device.off('removed', removed);
  };
}

/**
 * @internal What util.inspect hands a custom inspector (`InspectOptionsStylized` in @types/node 20,
 * `InspectContext` in later ones): our own name, so the declarations compile against either.
 */
export interface InspectStyling {
  colors?: boolean;
  stylize(text: string, styleType: 'bigint'): string;
}

/**
 * @internal `Name { key: value, ... }` on one line whatever its length, values styled (and
 * coloured) as util.inspect would; bigints in hex (they are feature masks).
 */
export function inspectLine(
  name: string,
  fields: Record<string, string | number | bigint | boolean>,
  options: InspectStyling,
): string {
  const parts = Object.entries(fields).map(([key, value]) => {
    const shown =
      typeof value === 'bigint'
        ? options.stylize(`0x${value.toString(16)}n`, 'bigint')
        : inspect(value, { colors: options.colors, breakLength: Infinity });
    return `${key}: ${shown}`;
  });
  return `${name} { ${parts.join(', ')} }`;
}

/**
 * What a native completion callback reaches its queue driver through. Native code holds its
 * callbacks in persistent references, which are GC roots: a strong link from there would keep every
 * device alive that was never closed. So the relay holds the driver weakly, and strongly only
 * while the device holds chains whose requests someone awaits; an idle device nobody references
 * is then collected, and its finalizer resets it and stops its threads.
 */
interface QueueRelay {
  strong: QueueDriver<unknown> | undefined;
  weak: WeakRef<QueueDriver<unknown>> | undefined;
}

interface DeviceRelays {
  device: WeakRef<Device> | undefined;
  queues: QueueRelay[];
}

// The callbacks native code holds are made out here, where they can close over nothing but their
// relay (a closure made inside a method shares that method's context, `this` included).
function completionRelay(relay: QueueRelay): NativeCompletionCallback {
  return (count, broken) => (relay.strong ?? relay.weak?.deref())?.complete(count, broken);
}

function expiryRelay(device: WeakRef<Device>): () => void {
  return () => device.deref()?.deadlineExpired();
}

function configRelay(relays: DeviceRelays): (kind: 'config' | 'removal') => void {
  return (kind) => relays.device?.deref()?.configEvent(kind);
}

/**
 * Opens a virtio device without driving it: its identity, offered features and config space.
 *
 * @param path `'mock:blk'`, `'mock:net'`, `'/dev/vhost-vdpa-N'` or `'vfio:<pci address>'`.
 */
export async function openDevice(path: string, options: OpenOptions = {}): Promise<Device> {
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
  const nativeOptions = toNativeOptions(path, options);
  const requestTimeout = requestTimeoutOf(options);
  // The transport opens on the threadpool (a VFIO reset, vhost-vdpa ioctls); meanwhile the vendor id of a
  // vhost-vdpa device, which its char device cannot tell, is asked of the vdpa netlink family.
  const [nativeDevice, vendorId] = await Promise.all([
    native.openDevice(path, nativeOptions),
    path.startsWith('/dev/') ? vhostVendorId(path) : undefined,
  ]);
  return new Device(path, nativeDevice, requestTimeout, vendorId);
}

/** `vdpa dev show`'s vendor id of the device behind a vhost-vdpa node; 0 when it cannot be told. */
async function vhostVendorId(path: string): Promise<number> {
  const name = await vdpaNameOfVhostNode(path);
  if (name === undefined) return 0;
  try {
    return (await deviceAttributes(name)).vendorId ?? 0;
  } catch {
    return 0; // no vdpa netlink family (module not loaded): the id stays unknown, as the transport says
  }
}

const REMOVED_REASON = 'the host is taking the device back (unbound from vfio-pci)';
const REMOVED_HINT =
  'the device was closed so the unbind can finish: what it returned meanwhile completed, the rest failed';

/** @internal What {@link openForDriver} needs to know about a driver. */
export interface DriverOpener<O, D> {
  /** Virtio device type the driver handles, and its name for the error (`'a block device'`). */
  type: number;
  what: string;
  /** Checks of the driver's own options that need no device (run before anything is opened). */
  check?: (options: O) => void;
  /** Negotiates and starts the device. */
  bringUp: (device: Device) => Promise<D>;
}

/**
 * @internal Opens `path` for a driver: the argument checks that need no device first, then the
 * device, its type, and the driver's bring-up; the device is closed again if any of that fails.
 */
export async function openForDriver<O extends OpenOptions & { queueSize?: number; packed?: boolean }, D>(
  path: string,
  options: O,
  driver: DriverOpener<O, D>,
): Promise<D> {
  if (typeof path !== 'string') throw new TypeError('device path must be a string');
  checkObject(options, 'options');
  checkQueueSizeOption(options.queueSize, options.packed === true);
  driver.check?.(options);
  const device = await openDevice(path, options);
  try {
    if (device.deviceId !== driver.type)
      throw vdpaError('ENODEV', 'open', device.path, `not ${driver.what} (virtio device id ${device.deviceId})`);
    return await driver.bringUp(device);
  } catch (e) {
    await device.close();
    throw e;
  }
}

/**
 * The checks of a queueSize option that need no device (openForDriver makes them before opening
 * one): an integer up to 32768, a power of two for split rings.
 */
function checkQueueSizeOption(size: number | undefined, packed: boolean): void {
  if (size === undefined) return;
  checkInteger(size, 'queueSize', 1, 32768);
  if (!packed && (size & (size - 1)) !== 0) throw new RangeError('queueSize must be a power of two');
}

/** Features every driver here asks for when the device offers them. */
export const COMMON_FEATURES = Feature.RING_EVENT_IDX | Feature.RING_INDIRECT_DESC;

// Virtio devices served by this process through VDUSE: the native layer (native/vduse) creates the
// device and answers the kernel on its own thread; this file checks arguments, runs a JS handler's
// requests, and attaches the device through the management API (createDevice + bindDriver).
import type { DeviceEntry } from './discovery';
import { getDevice } from './management';
import { native, type NativeAddon } from './native';
import { checkBoolean, checkInteger, checkObject } from './validate';
import { VduseDevice } from './vduse-attach';

/**
 * A block device implemented in JavaScript (the `handler` of {@link createVduseBlk}). Offsets and
 * lengths are bytes, whole 512-byte sectors, inside the capacity (checked before the handler is
 * called). Each method may return its value or a Promise; a throw or a rejection answers the driver
 * with an I/O error. Requests arrive in batches, one per wake-up of the JS thread, and run concurrently.
 * The handler runs on this JS thread: I/O to the device that blocks this thread (a synchronous `fs`
 * call or `execFileSync('mkfs.ext4', ...)` on its /dev/vdX) waits for requests only this thread can
 * answer and never ends; drive it from another process or worker, or asynchronously.
 */
export interface VduseBlkHandler {
  /** Returns exactly `length` bytes from `offset`. */
  read(offset: number, length: number): Uint8Array | Promise<Uint8Array>;
  /** Stores `data` at `offset` (the buffer is the handler's to keep). Not needed when `readOnly`. */
  write?(offset: number, data: Uint8Array): void | Promise<void>;
  /** Makes completed writes durable. Default: nothing to do. */
  flush?(): void | Promise<void>;
  /** The range may be forgotten; it must read back as zeroes. Default: writeZeroes. */
  discard?(offset: number, length: number): void | Promise<void>;
  /** The range reads back as zeroes. Default: write() of zero-filled buffers. */
  writeZeroes?(offset: number, length: number): void | Promise<void>;
}

/** What {@link createVduseBlk} creates: `file`, `capacity` alone (a RAM disk), or `capacity` and `handler`. */
export interface VduseBlkOptions {
  /** Name of the VDUSE device (/dev/vduse/NAME) and of the vdpa device {@link VduseBlkDevice.attach} makes. */
  name: string;
  /** Backing file (or block device): its size, in whole 512-byte sectors, is the capacity. */
  file?: string;
  /** Size in bytes (a multiple of 512) of a RAM disk (sparse: only written data costs memory) or of the `handler`'s disk. */
  capacity?: number;
  /** Serves the requests in JavaScript (needs `capacity`). */
  handler?: VduseBlkHandler;
  /** Request queues, 1 to 64 (default 1). */
  numQueues?: number;
  /** Largest queue size the driver may choose, a power of two from 2 to 32768 (default 256). */
  queueSize?: number;
  /** Offer VIRTIO_BLK_F_RO and refuse writes (default false). */
  readOnly?: boolean;
  /** The GET_ID answer (`/sys/block/vdX/serial`), at most 20 bytes (default empty). */
  serial?: string;
  /** Logical block size, a power of two from 512 to 65536 (default 512). */
  blockSize?: number;
  /** The vendor id the vdpa device reports (`vdpa dev show`, a driver's `device.vendorId`); default 0. */
  vendorId?: number;
  /**
   * Take over the VDUSE device of this name if it exists, e.g. after the process serving it died
   * (`SIGKILL`: the kernel keeps the device, and its driver waits for the requests in flight). The
   * options must be those it was made with. The queues resume from their used index: the requests
   * the dead process had taken and not finished run again (fine for a disk: reads and writes are
   * idempotent). Not with a `handler`. Default false: an existing name is EEXIST.
   */
  reconnect?: boolean;
  /** @internal The control node (tests point it elsewhere). */
  controlPath?: string;
}

/** Counters of one queue, since the device was created. */
export interface VduseQueueStats {
  /** Requests (descriptor chains) completed. */
  requests: number;
  /** Bytes the driver handed to the device (headers and data it wrote). */
  readBytes: number;
  /** Bytes the device wrote back (data read, status). */
  writtenBytes: number;
}

interface NativeVduse {
  readonly name: string;
  readonly capacity: number;
  readonly numQueues: number;
  stats(): VduseQueueStats[];
  close(): Promise<void>;
  /** Answers a request handed to onRequests (a read's data: exactly its length). */
  complete(token: number, ok: boolean, data?: Uint8Array): void;
  /** Resizes the disk and raises the config interrupt; resolves to the new capacity. */
  resize(capacity: number): Promise<number>;
}

/** Options of {@link VduseBlkDevice.resize}. */
export interface VduseResizeOptions {
  /**
   * Allow a capacity below the current one (default false: a RangeError, like `qemu-img resize`
   * without `--shrink`). Whatever lies past the new end is out of the driver's reach: a mounted file
   * system there loses data. A file is never truncated (growing again brings its bytes back); RAM
   * past the new end is freed.
   */
  shrink?: boolean;
}

/** A request of a JS-handler device, as the native layer hands it over. */
interface NativeBlkRequest {
  token: number;
  op: 'read' | 'write' | 'flush' | 'discard' | 'writeZeroes';
  offset: number;
  length: number;
  data?: Uint8Array;
  ranges?: { offset: number; length: number; unmap: boolean }[];
}

interface VduseAddon {
  createVduseBlk(options: Record<string, unknown>): Promise<NativeVduse>;
}

const addon = native as NativeAddon & VduseAddon;

const SERIAL_BYTES = 20;

function isPowerOfTwo(v: number): boolean {
  return v > 0 && (v & (v - 1)) === 0;
}

function checkOptions(options: VduseBlkOptions): Record<string, unknown> {
  checkObject(options, 'options');
  const {
    name,
    file,
    capacity,
    handler,
    numQueues,
    queueSize,
    readOnly,
    serial,
    blockSize,
    vendorId,
    controlPath,
    reconnect,
  } = options;
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
  if (name.length === 0 || Buffer.byteLength(name) > 255 || /[/\0\s]/.test(name))
    throw new RangeError(`name must be 1 to 255 bytes without '/', NUL or spaces, got ${JSON.stringify(name)}`);
  const out: Record<string, unknown> = { name };
  if (file !== undefined && capacity !== undefined)
    throw new TypeError('give either file or capacity: a file-backed disk has the size of its file');
  if (file !== undefined) {
    if (typeof file !== 'string') throw new TypeError(`file must be a string, got ${typeof file}`);
    if (file.length === 0 || file.includes('\0')) throw new RangeError('file must be a non-empty path without NUL');
    out.file = file;
  } else if (capacity !== undefined) {
    checkInteger(capacity, 'capacity', 512, 2 ** 50);
    if (capacity % 512 !== 0) throw new RangeError(`capacity must be a multiple of 512, got ${capacity}`);
    out.capacity = capacity;
  } else {
    throw new TypeError('options needs file (a backing file) or capacity (a RAM disk)');
  }
  if (handler !== undefined) {
    if (capacity === undefined) throw new TypeError('a handler needs capacity: the size of the disk it serves');
    checkObject(handler, 'handler');
    const methods = ['read', 'write', 'flush', 'discard', 'writeZeroes'] as const;
    for (const m of methods)
      if (handler[m] !== undefined && typeof handler[m] !== 'function')
        throw new TypeError(`handler.${m} must be a function`);
    if (typeof handler.read !== 'function') throw new TypeError('handler.read must be a function');
    if (handler.write === undefined && readOnly !== true)
      throw new TypeError('handler.write must be a function (or the disk readOnly)');
  }
  if (reconnect !== undefined) {
    out.reconnect = checkBoolean(reconnect, 'reconnect');
    if (reconnect && handler !== undefined)
      throw new TypeError('reconnect needs a device that finishes requests in order: not with a handler');
  }
  if (numQueues !== undefined) out.numQueues = checkInteger(numQueues, 'numQueues', 1, 64);
  if (queueSize !== undefined) {
    checkInteger(queueSize, 'queueSize', 2, 32768);
    if (!isPowerOfTwo(queueSize)) throw new RangeError(`queueSize must be a power of two, got ${queueSize}`);
    out.queueSize = queueSize;
  }
  if (readOnly !== undefined) out.readOnly = checkBoolean(readOnly, 'readOnly');
  if (serial !== undefined) {
    if (typeof serial !== 'string') throw new TypeError(`serial must be a string, got ${typeof serial}`);
    if (Buffer.byteLength(serial) > SERIAL_BYTES || serial.includes('\0'))
      throw new RangeError(`serial must be at most ${SERIAL_BYTES} bytes without NUL, got ${JSON.stringify(serial)}`);
    out.serial = serial;
  }
  if (blockSize !== undefined) {
    checkInteger(blockSize, 'blockSize', 512, 65536);
    if (!isPowerOfTwo(blockSize)) throw new RangeError(`blockSize must be a power of two, got ${blockSize}`);
    out.blockSize = blockSize;
  }
  if (vendorId !== undefined) out.vendorId = checkInteger(vendorId, 'vendorId', 0, 0xffffffff);
  if (controlPath !== undefined) {
    if (typeof controlPath !== 'string') throw new TypeError('controlPath must be a string');
    out.controlPath = controlPath;
  }
  return out;
}

/**
 * A virtio-blk device served by this process through VDUSE. Its requests are answered on a native
 * thread (never behind JavaScript), so a driver in this very process cannot deadlock it. Made by
 * {@link createVduseBlk}; {@link VduseBlkDevice.attach} hands it to a kernel driver.
 */
export class VduseBlkDevice extends VduseDevice {
  /** Request queues. */
  readonly numQueues: number;
  private readonly handle: NativeVduse;
  private size: number;

  /** @internal Use {@link createVduseBlk}. */
  constructor(handle: NativeVduse, entry?: DeviceEntry) {
    super(handle.name, entry);
    this.handle = handle;
    this.size = handle.capacity;
    this.numQueues = handle.numQueues;
  }

  /** Capacity in bytes ({@link VduseBlkDevice.resize} changes it). */
  get capacity(): number {
    return this.size;
  }

  /**
   * Changes the capacity to `capacity` bytes (a multiple of 512, at least 512) and tells the driver
   * with a config-change interrupt: the kernel's virtio_blk resizes `/dev/vdX` (its
   * `/sys/block/vdX/size`), a driver over vhost_vdpa gets `'configChange'` and reads the new capacity
   * from the config space. A file disk grows its file (sparse) when it is shorter; a block device, or
   * a read-only disk's file, must be large enough already (VdpaError `EINVAL` / `EROFS`, nothing
   * changed). A RAM disk is remapped (new space reads as zeroes); a handler disk just gets a new
   * range (the handler must serve it). Shrinking needs `{ shrink: true }` (see
   * {@link VduseResizeOptions.shrink}). Runs off the JS thread; resolves once the driver was told.
   *
   * @example
   * ```ts
   * await disk.resize(disk.capacity * 2); // then e.g. resize2fs on /dev/vdX
   * ```
   */
  resize(capacity: number, options: VduseResizeOptions = {}): Promise<void> {
    checkInteger(capacity, 'capacity', 512, 2 ** 50);
    if (capacity % 512 !== 0) throw new RangeError(`capacity must be a multiple of 512, got ${capacity}`);
    checkObject(options, 'options');
    const shrink = options.shrink === undefined ? false : checkBoolean(options.shrink, 'options.shrink');
    return this.serialize(async () => {
      this.checkOpen('resize');
      if (capacity < this.size && !shrink)
        throw new RangeError(
          `capacity ${capacity} is below the current ${this.size}: pass { shrink: true } to cut the disk's end off`,
        );
      this.size = await this.handle.resize(capacity);
    });
  }

  /** Requests and bytes per queue, read without waiting for the device thread. */
  get stats(): VduseQueueStats[] {
    return this.handle.stats();
  }

  protected release(): Promise<void> {
    return this.handle.close();
  }
}

/**
 * Creates a virtio-blk device served by this process through VDUSE (Linux 5.15+, the `vduse`
 * module): a file-backed (`file`) or RAM (`capacity`) disk, then {@link VduseBlkDevice.attach} it.
 * TypeError/RangeError for bad options; VdpaError with a hint when /dev/vduse/control is missing
 * (`modprobe vduse`), the name is taken (EEXIST) or privileges are missing (EACCES/EPERM: run as root).
 *
 * @example
 * ```ts
 * await using disk = await createVduseBlk({ name: 'nodeblk0', file: '/var/lib/disk.img', numQueues: 2 });
 * const { blockDevice } = await disk.attach('virtio_vdpa'); // '/dev/vdb'
 * ```
 */
export async function createVduseBlk(options: VduseBlkOptions): Promise<VduseBlkDevice> {
  const checked = checkOptions(options);
  const { handler } = options;
  if (handler === undefined) {
    const device = await addon.createVduseBlk(checked);
    // Taken over: its vdpa device (if any) is attached already, and close() deletes it.
    const entry = options.reconnect ? await getDevice(device.name).catch(() => undefined) : undefined;
    return new VduseBlkDevice(device, entry?.mgmtDev === 'vduse' ? entry : undefined);
  }
  const serve = new HandlerServer(handler);
  const created: { device?: NativeVduse } = {};
  const early: NativeBlkRequest[] = []; // before createVduseBlk resolved (none expected: not attached yet)
  checked.onRequests = (batch: NativeBlkRequest[]): void => {
    for (const r of batch)
      if (created.device) serve.run(created.device, r);
      else early.push(r);
  };
  const device = await addon.createVduseBlk(checked);
  created.device = device;
  for (const r of early.splice(0)) serve.run(device, r);
  return new VduseBlkDevice(device);
}

const ZERO_CHUNK = 1 << 20;

/** Runs a JS-handler device's requests and answers them. */
class HandlerServer {
  constructor(private readonly handler: VduseBlkHandler) {}

  run(device: NativeVduse, r: NativeBlkRequest): void {
    this.execute(r).then(
      (data) => device.complete(r.token, true, data),
      () => device.complete(r.token, false),
    );
  }

  private async execute(r: NativeBlkRequest): Promise<Uint8Array | undefined> {
    const h = this.handler;
    switch (r.op) {
      case 'read': {
        const data = await h.read(r.offset, r.length);
        if (!(data instanceof Uint8Array) || data.byteLength !== r.length)
          throw new RangeError(`handler.read(${r.offset}, ${r.length}) must return ${r.length} bytes`);
        return data;
      }
      case 'write':
        if (!h.write || !r.data) throw new TypeError('no handler.write');
        await h.write(r.offset, r.data);
        return undefined;
      case 'flush':
        await h.flush?.();
        return undefined;
      case 'discard':
      case 'writeZeroes':
        for (const range of r.ranges ?? []) await this.zero(r.op, range.offset, range.length);
        return undefined;
    }
  }

  private async zero(op: 'discard' | 'writeZeroes', offset: number, length: number): Promise<void> {
    const h = this.handler;
    if (op === 'discard' && h.discard) return h.discard(offset, length);
    if (h.writeZeroes) return h.writeZeroes(offset, length);
    if (!h.write) throw new TypeError('no handler.write');
    for (let at = 0; at < length; at += ZERO_CHUNK) {
      const n = Math.min(ZERO_CHUNK, length - at);
      await h.write(offset + at, new Uint8Array(n));
    }
  }
}

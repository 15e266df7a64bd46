import {
  BLK_CONFIG_SIZE,
  BLK_DISCARD_SEGMENT_SIZE,
  BLK_ID_BYTES,
  BLK_REQUEST_HEADER_SIZE,
  BlkConfig,
  BlkDiscardSegment,
  BlkRequestHeader,
  BlkStatus,
  ConfigView,
  type Field,
} from './config';
import { BlkFeature, DeviceType, Feature } from './constants';
import { COMMON_FEATURES, Device, type AllocOptions, type OpenOptions } from './device';
import { vdpaError } from './errors';
import type { ChainSegment, QueueDriver } from './queue';
import { checkBlockRange, checkInteger, checkObject } from './validate';

/** Options for {@link openBlk}. */
export interface BlkOptions extends OpenOptions {
  /**
   * Request queues the driver uses. Default 1. More than the device offers is a RangeError, never
   * silently capped (a mock:blk offers `mock.numQueues`, default 1).
   */
  numQueues?: number;
  /** Entries per queue (a power of two unless packed). Default 256, or the device's maximum if smaller. */
  queueSize?: number;
  /** Use the packed ring when the device offers it; default false. */
  packed?: boolean;
}

/** One operation of a {@link BlkDevice.batch}. */
export interface BlkOp {
  op: 'read' | 'write';
  /** Byte offset on the device, multiple of 512. */
  offset: number;
  /** Data to write, or where to read into; length a multiple of 512. */
  buffer: Uint8Array;
}

const SECTOR = 512;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const T_DISCARD = 11;
const T_WRITE_ZEROES = 13;
// Per-slot metadata: request header, then the discard range or the ID, then the status byte.
const SLOT_BYTES = 64;
const PAYLOAD_AT = BLK_REQUEST_HEADER_SIZE;
const STATUS_AT = PAYLOAD_AT + Math.max(BLK_DISCARD_SEGMENT_SIZE, BLK_ID_BYTES);
const BOUNCE_CHUNK = 64 * 1024;
const BOUNCE_REGION = 16 * BOUNCE_CHUNK;
const BOUNCE_REGIONS_MAX = 16;
const MAX_REQUEST_BYTES = 1 << 20;

/** Completion target shared by the pieces of one call (or all entries of a batch). */
class Call {
  remaining = 0;
  error: Error | undefined;
  constructor(
    readonly resolve: (value: string | undefined) => void,
    readonly reject: (err: Error) => void,
  ) {}
  pieceDone(err: Error | undefined): void {
    if (err && !this.error) this.error = err;
    if (--this.remaining === 0) {
      if (this.error) this.reject(this.error);
      else this.resolve(undefined);
    }
  }
}

/** One chain in flight: what to do when it completes. */
interface Piece {
  call: Call;
  type: number;
  /** Bounce chunk (handle/offset) and the user's bytes it shadows, for reads through a bounce. */
  bounce?: BounceChunk;
  user?: Uint8Array;
  /** The buffer handed to the device, held so it cannot be collected while the device owns it. */
  keep?: Uint8Array;
  /** Expected bytes of data the device writes (reads and GET_ID). */
  dataIn: number;
  idOut?: (id: string) => void;
}

interface BounceChunk {
  region: number;
  offset: number;
  bytes: Uint8Array;
}

/** Bounce buffers for ordinary (non-DMA) memory: 64 KiB chunks in lazily registered 1 MiB regions. */
class BouncePool {
  private readonly free: BounceChunk[] = [];
  private regions = 0;
  private readonly waiters: (() => void)[] = [];

  /**
   * One region is mapped at open, before any I/O. On vhost-vdpa the pool stays at that size: a
   * mapping change while requests are in flight makes a VDUSE device re-map everything (its daemon
   * drops the buffers of requests it is working on), so no IOTLB update may happen under I/O.
   */
  constructor(
    private readonly device: Device,
    private readonly maxRegions: number,
  ) {
    this.grow();
  }

  acquire(): BounceChunk | undefined {
    if (this.free.length === 0 && this.regions < this.maxRegions) {
      try {
        this.grow();
      } catch {
        // Out of pinnable memory (RLIMIT_MEMLOCK) or IOVA space: wait for a chunk in use.
        return undefined;
      }
    }
    return this.free.pop();
  }

  private grow(): void {
    const r = this.device.allocInternal(BOUNCE_REGION);
    this.regions++;
    for (let off = 0; off < BOUNCE_REGION; off += BOUNCE_CHUNK)
      this.free.push({ region: r.handle, offset: off, bytes: r.bytes.subarray(off, off + BOUNCE_CHUNK) });
  }
  release(chunk: BounceChunk): void {
    this.free.push(chunk);
    // A loop, not a chain of calls: a waiter that fails without taking the chunk hands it on.
    while (this.free.length > 0 && this.waiters.length > 0) (this.waiters.shift() as () => void)();
  }
  whenFree(fn: () => void): void {
    this.waiters.push(fn);
  }
}

interface BlkQueue {
  driver: QueueDriver<Piece>;
  meta: Uint8Array;
  metaView: DataView;
  metaHandle: number;
}

/**
 * A virtio-blk device driven from Node: promise-per-request I/O, a batch path, zero-copy DMA buffers.
 * Offsets and lengths are bytes and must be multiples of 512.
 */
export class BlkDevice {
  /** Size in bytes. */
  readonly capacity: number;
  /** Logical block size the device reports (512 when it reports none). */
  readonly blockSize: number;
  /** Request queues in use. */
  readonly numQueues: number;
  /** Entries per queue. */
  readonly queueSize: number;
  /** True when the device is read-only (VIRTIO_BLK_F_RO). */
  readonly readOnly: boolean;
  /** The underlying device (features, config space, DMA buffers). */
  readonly device: Device;

  private readonly queues: BlkQueue[] = [];
  private readonly bounce: BouncePool;
  private readonly maxRequest: number;
  private readonly sizeMax: number;
  private readonly maxDiscardSectors: number;
  private readonly maxZeroesSectors: number;
  private nextQueue = 0;

  /** @internal Use {@link openBlk}. */
  constructor(device: Device, options: BlkOptions) {
    if (device.deviceId !== DeviceType.blk) {
      void device.close();
      throw vdpaError('ENODEV', 'open', device.path, `not a block device (virtio device id ${device.deviceId})`);
    }
    this.device = device;
    const wanted =
      COMMON_FEATURES |
      BlkFeature.SIZE_MAX |
      BlkFeature.SEG_MAX |
      BlkFeature.BLK_SIZE |
      BlkFeature.FLUSH |
      BlkFeature.MQ |
      BlkFeature.RO |
      BlkFeature.DISCARD |
      BlkFeature.WRITE_ZEROES |
      (options.packed ? Feature.RING_PACKED : 0n);
    const f = device.negotiate(wanted);
    const cfg = new ConfigView(device.readConfig(0, Math.min(device.configSize, BLK_CONFIG_SIZE)));
    // A field counts when its feature was negotiated and the device's config space holds it.
    const field = (fd: Field, feature: bigint, def: number): number => (f & feature && cfg.has(fd) ? cfg.get(fd) : def);
    this.capacity = cfg.get(BlkConfig.capacity) * SECTOR;
    this.blockSize = field(BlkConfig.blkSize, BlkFeature.BLK_SIZE, SECTOR) || SECTOR;
    this.readOnly = (f & BlkFeature.RO) !== 0n;
    const segMax = Math.max(1, field(BlkConfig.segMax, BlkFeature.SEG_MAX, 1));
    this.sizeMax = Math.max(SECTOR, field(BlkConfig.sizeMax, BlkFeature.SIZE_MAX, MAX_REQUEST_BYTES)) & ~(SECTOR - 1);
    this.maxRequest = Math.max(SECTOR, Math.min(MAX_REQUEST_BYTES, segMax * this.sizeMax) & ~(SECTOR - 1));
    this.maxDiscardSectors = field(BlkConfig.maxDiscardSectors, BlkFeature.DISCARD, 0) || 0xffffffff;
    this.maxZeroesSectors = field(BlkConfig.maxWriteZeroesSectors, BlkFeature.WRITE_ZEROES, 0) || 0xffffffff;
    const offered = field(BlkConfig.numQueues, BlkFeature.MQ, 1);
    const numQueues = options.numQueues === undefined ? 1 : checkInteger(options.numQueues, 'numQueues', 1, 256);
    if (numQueues > Math.max(1, offered))
      throw new RangeError(`numQueues ${numQueues} is more than the device offers (${Math.max(1, offered)})`);
    this.numQueues = numQueues;
    const queueSize = device.queueSizeFor(options.queueSize, [0]);
    this.queueSize = queueSize;
    const maxSegments = Math.ceil(this.maxRequest / this.sizeMax) + 2;
    for (let i = 0; i < numQueues; i++) {
      const meta = device.allocInternal(queueSize * SLOT_BYTES);
      const q: BlkQueue = {
        meta: meta.bytes,
        metaView: new DataView(meta.bytes.buffer),
        metaHandle: meta.handle,
        driver: device.createQueue<Piece>(
          i,
          queueSize,
          (piece, token, len, err) => this.pieceDone(q, piece, token, len, err),
          maxSegments,
        ),
      };
      this.queues.push(q);
    }
    this.bounce = new BouncePool(device, device.transport === 'vhost-vdpa' ? 1 : BOUNCE_REGIONS_MAX);
    device.start();
  }

  /** Allocates a zero-copy DMA buffer (see {@link Device.allocBuffer}). */
  allocBuffer(size: number, options?: AllocOptions): Uint8Array {
    return this.device.allocBuffer(size, options);
  }

  /** Reads `buffer.length` bytes at `offset` into `buffer`. */
  read(offset: number, buffer: Uint8Array): Promise<void> {
    return this.call((c) => this.startData(c, T_IN, offset, buffer));
  }

  /** Writes `buffer` at `offset`. */
  write(offset: number, buffer: Uint8Array): Promise<void> {
    return this.call((c) => this.startData(c, T_OUT, offset, buffer));
  }

  /**
   * Many reads and writes with one Promise: no Promise or buffer is created per entry. Entries may
   * complete in any order; the Promise settles when all have (rejecting with the first error).
   */
  batch(ops: readonly BlkOp[]): Promise<void> {
    if (!Array.isArray(ops)) return Promise.reject(new TypeError('ops must be an array'));
    return this.call((c) => {
      for (const o of ops) {
        if (o === null || typeof o !== 'object') throw new TypeError('each op must be an object');
        if (o.op !== 'read' && o.op !== 'write') throw new TypeError(`op must be 'read' or 'write'`);
        this.checkData(o.offset, o.buffer, o.op === 'write');
      }
      for (const o of ops) this.startData(c, o.op === 'read' ? T_IN : T_OUT, o.offset, o.buffer);
    });
  }

  /** Makes completed writes durable (a no-op for write-through devices without VIRTIO_BLK_F_FLUSH). */
  flush(): Promise<void> {
    return this.call((c) => {
      this.device.live();
      if (this.device.features & BlkFeature.FLUSH) this.issue(c, { call: c, type: T_FLUSH, dataIn: 0 }, 0, []);
    });
  }

  /** Tells the device a range is unused (VIRTIO_BLK_F_DISCARD). */
  discard(offset: number, length: number): Promise<void> {
    return this.call((c) => this.startRanges(c, T_DISCARD, offset, length));
  }

  /** Writes zeroes over a range without transferring them (VIRTIO_BLK_F_WRITE_ZEROES). */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.call((c) => this.startRanges(c, T_WRITE_ZEROES, offset, length));
  }

  /** The device's serial/ID string (VIRTIO_BLK_T_GET_ID, up to 20 bytes). */
  getId(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      let id = '';
      const c = new Call(() => resolve(id), reject);
      try {
        this.device.live();
        this.issue(c, { call: c, type: T_GET_ID, dataIn: BLK_ID_BYTES, idOut: (s) => (id = s) }, 0, []);
      } catch (e) {
        reject(e as Error);
      }
    });
  }

  /** See {@link Device.ref}. */
  ref(): this {
    this.device.ref();
    return this;
  }

  /** See {@link Device.unref}. */
  unref(): this {
    this.device.unref();
    return this;
  }

  /** Resets the device; requests in flight reject with code `'ECANCELED'`. */
  close(): Promise<void> {
    return this.device.close();
  }

  private call(start: (c: Call) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const c = new Call(() => resolve(), reject);
      // Counts as one extra piece until start() has issued everything, so early completions
      // cannot settle the call.
      c.remaining = 1;
      try {
        start(c);
      } catch (e) {
        c.error ??= e as Error;
      }
      c.pieceDone(undefined);
    });
  }

  private checkData(offset: number, buffer: Uint8Array, isWrite: boolean): void {
    if (!(buffer instanceof Uint8Array)) throw new TypeError('buffer must be a Uint8Array');
    checkBlockRange(offset, buffer.length, this.capacity);
    if (isWrite && this.readOnly) throw vdpaError('EROFS', 'write', this.device.path, 'the device is read-only');
  }

  private startData(c: Call, type: number, offset: number, buffer: Uint8Array): void {
    this.checkData(offset, buffer, type === T_OUT);
    this.device.live();
    const dma = this.device.dmaLocation(buffer);
    const step = dma ? this.maxRequest : Math.min(this.maxRequest, BOUNCE_CHUNK);
    for (let at = 0; at < buffer.length; at += step) {
      const part = buffer.subarray(at, Math.min(buffer.length, at + step));
      const sector = (offset + at) / SECTOR;
      if (dma) {
        this.issue(
          c,
          { call: c, type, keep: buffer, dataIn: type === T_IN ? part.length : 0 },
          sector,
          this.dataSegments(dma.region, dma.offset + at, part.length, type === T_IN),
        );
      } else {
        this.issueBounced(c, type, sector, part);
      }
    }
  }

  private issueBounced(c: Call, type: number, sector: number, part: Uint8Array): void {
    // A request still waiting for a chunk when the device closed fails like one in flight.
    const cancelled = this.device.cancelError;
    if (cancelled) throw cancelled;
    const chunk = this.bounce.acquire();
    if (!chunk) {
      c.remaining++;
      this.bounce.whenFree(() => {
        try {
          this.issueBounced(c, type, sector, part);
        } catch (e) {
          c.error ??= e as Error;
        }
        c.pieceDone(undefined);
      });
      return;
    }
    const piece: Piece = { call: c, type, bounce: chunk, dataIn: type === T_IN ? part.length : 0 };
    if (type === T_IN) piece.user = part;
    try {
      if (type === T_OUT) chunk.bytes.set(part);
      this.issue(c, piece, sector, this.dataSegments(chunk.region, chunk.offset, part.length, type === T_IN));
    } catch (e) {
      this.bounce.release(chunk);
      throw e;
    }
  }

  private dataSegments(region: number, offset: number, length: number, writable: boolean): ChainSegment[] {
    const segs: ChainSegment[] = [];
    for (let at = 0; at < length; at += this.sizeMax)
      segs.push({ region, offset: offset + at, length: Math.min(this.sizeMax, length - at), writable });
    return segs;
  }

  private startRanges(c: Call, type: number, offset: number, length: number): void {
    checkBlockRange(offset, length, this.capacity);
    const feature = type === T_DISCARD ? BlkFeature.DISCARD : BlkFeature.WRITE_ZEROES;
    if (!(this.device.live() && this.device.features & feature))
      throw vdpaError(
        'EOPNOTSUPP',
        type === T_DISCARD ? 'discard' : 'writeZeroes',
        this.device.path,
        'the device does not offer this operation',
      );
    if (this.readOnly) throw vdpaError('EROFS', 'write', this.device.path, 'the device is read-only');
    const maxSectors = type === T_DISCARD ? this.maxDiscardSectors : this.maxZeroesSectors;
    for (let sector = offset / SECTOR, left = length / SECTOR; left > 0;) {
      const n = Math.min(left, maxSectors);
      this.issue(c, { call: c, type, dataIn: 0 }, 0, [], { sector, count: n });
      sector += n;
      left -= n;
    }
  }

  /** Puts one request on a queue, waiting for a free slot if all are taken. */
  private issue(
    c: Call,
    piece: Piece,
    sector: number,
    data: ChainSegment[],
    range?: { sector: number; count: number },
  ): void {
    const q = this.queues[this.nextQueue] as BlkQueue;
    this.nextQueue = (this.nextQueue + 1) % this.queues.length;
    const token = q.driver.tryAcquire();
    c.remaining++;
    if (token < 0) {
      q.driver.whenFree(() => {
        c.remaining--;
        try {
          this.issue(c, piece, sector, data, range);
        } catch (e) {
          c.remaining++;
          if (piece.bounce) this.bounce.release(piece.bounce);
          c.pieceDone(e as Error);
        }
      });
      return;
    }
    const slot = token * SLOT_BYTES;
    const v = q.metaView;
    v.setUint32(slot + BlkRequestHeader.type.offset, piece.type, true);
    v.setUint32(slot + BlkRequestHeader.ioprio.offset, 0, true);
    v.setBigUint64(slot + BlkRequestHeader.sector.offset, BigInt(sector), true);
    q.meta[slot + STATUS_AT] = 0xff;
    const segs: ChainSegment[] = [
      { region: q.metaHandle, offset: slot, length: BLK_REQUEST_HEADER_SIZE, writable: false },
    ];
    if (range) {
      const at = slot + PAYLOAD_AT;
      v.setBigUint64(at + BlkDiscardSegment.sector.offset, BigInt(range.sector), true);
      v.setUint32(at + BlkDiscardSegment.numSectors.offset, range.count, true);
      v.setUint32(at + BlkDiscardSegment.flags.offset, 0, true);
      segs.push({ region: q.metaHandle, offset: at, length: BLK_DISCARD_SEGMENT_SIZE, writable: false });
    }
    for (const s of data) segs.push(s);
    if (piece.type === T_GET_ID)
      segs.push({ region: q.metaHandle, offset: slot + PAYLOAD_AT, length: BLK_ID_BYTES, writable: true });
    segs.push({ region: q.metaHandle, offset: slot + STATUS_AT, length: 1, writable: true });
    q.driver.enqueue(token, segs, piece);
  }

  private pieceDone(q: BlkQueue, piece: Piece, token: number, len: number, err: Error | undefined): void {
    const slot = token * SLOT_BYTES;
    if (!err) {
      const status = q.meta[slot + STATUS_AT];
      if (len < 1 || status !== BlkStatus.OK) {
        const what = len < 1 ? 'the device returned the request without a status' : `status ${status}`;
        err = vdpaError(
          status === BlkStatus.UNSUPP ? 'EOPNOTSUPP' : 'EIO',
          blkOpName(piece.type),
          this.device.path,
          `the device failed the request (${what})`,
        );
      } else if (piece.user && piece.bounce) {
        piece.user.set(piece.bounce.bytes.subarray(0, piece.user.length));
      } else if (piece.idOut) {
        const raw = q.meta.subarray(slot + PAYLOAD_AT, slot + PAYLOAD_AT + Math.min(BLK_ID_BYTES, len - 1));
        const end = raw.indexOf(0);
        piece.idOut(Buffer.from(end < 0 ? raw : raw.subarray(0, end)).toString('latin1'));
      }
    }
    if (piece.bounce) this.bounce.release(piece.bounce);
    piece.call.pieceDone(err);
  }
}

function blkOpName(type: number): string {
  switch (type) {
    case T_IN:
      return 'read';
    case T_OUT:
      return 'write';
    case T_FLUSH:
      return 'flush';
    case T_GET_ID:
      return 'getId';
    case T_DISCARD:
      return 'discard';
    default:
      return 'writeZeroes';
  }
}

/**
 * Opens a virtio-blk device and brings it up: features, queues, DRIVER_OK.
 *
 * @example
 * const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 256, mock: { capacity: 64 << 20, numQueues: 2 } });
 * const buf = blk.allocBuffer(4096);
 * await blk.write(0, buf);
 */
export async function openBlk(path: string, options: BlkOptions = {}): Promise<BlkDevice> {
  if (typeof path !== 'string') throw new TypeError('device path must be a string');
  checkObject(options, 'options');
  const device = new Device(path, options);
  try {
    return new BlkDevice(device, options);
  } catch (e) {
    await device.close();
    throw e;
  }
}
